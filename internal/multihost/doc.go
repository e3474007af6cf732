// Package multihost holds the multi-host test of Skein (issue 9): a NATS
// server, the coordinator and two runtimes, each in a network namespace
// of its own (internal/netns), run as the real programs; one runtime's
// link is cut mid-job and the job must still end with every result
// correct, each once.
//
// The test needs root and nats-server (Debian's package;
// scripts/services/nats.sh installs it). Under CI a missing requirement
// is a failure; elsewhere the test is skipped with a message.
package multihost
