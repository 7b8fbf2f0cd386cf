"""The gateway: a FastAPI app turning HTTP calls into AMQP requests and replies back.

`gateway.app.create_app` builds it; `gateway.settings` is what it reads. Nothing is imported
here, so reading the gateway's settings (the CLI does) does not load FastAPI.
"""
