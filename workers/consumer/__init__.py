"""One consumer process: its AMQP connection, its subscription, its handlers."""
