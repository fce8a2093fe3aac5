"""Adapters that let agent frameworks keep their history in sessionlog.

One module per framework, each importing its framework only there (install
the matching extra):

- ``sessionlog.integrations.openai_agents.SessionLogSession`` (``openai-agents``)
- ``sessionlog.integrations.langchain.SessionLogChatMessageHistory`` (``langchain``)
- ``sessionlog.integrations.llama_index.SessionLogChatStore`` (``llama-index``)

Each framework message is one sessionlog message: ``role`` mapped to ours,
``content`` the message's readable text, and the whole serialized message in
``metadata`` so that what is read back equals what was written. See
docs/integrations.md.
"""
