module github.com/skeinrun/skein

go 1.26.8

require (
	github.com/rabbitmq/amqp091-go v1.14.0
	github.com/vmihailenco/msgpack/v5 v5.4.1
)

require github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
