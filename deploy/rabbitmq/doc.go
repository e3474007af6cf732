// Package rabbitmq holds skein-users.sh, which makes a Skein tenant on
// RabbitMQ (a virtual host and one user per role with the least rights
// the role needs), and the tests that run it against a real broker: each
// role can do what it needs and nothing more, and a tenant's users reach
// nothing of another. docs/security.md explains the rights.
package rabbitmq
