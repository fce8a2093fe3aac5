alter function sessionlog._is_valid_id(text) called on null input;
