// Package nats holds the nats-server permissions of Skein's roles
// (skein-auth.sh writes them for a list of namespaces; skein-auth.conf is
// its output for the default namespace "skein") and the tests that run a
// real nats-server configured with them: each role can do what it needs
// and nothing more, and a namespace's users reach nothing of another.
// docs/security.md explains the rights.
package nats
