-- The public functions return types of this schema, so they go with it; they
-- are dropped by name first so that nothing depends on the CASCADE alone.
drop function if exists
    public.create_session, public.log_message, public.log_messages,
    public.log_interaction, public.store_behavioral_vector,
    public.store_auth_decision, public.get_behavioral_vectors,
    public.get_auth_decisions, public.get_messages, public.list_sessions,
    public.delete_session, public.forget_user, public.auth_decision_summary;
drop schema sessionlog cascade;
