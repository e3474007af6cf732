// Package cluster tests Skein's programs on clustered brokers (issue 14):
// the 3-node nats-server cluster and the 3-node RabbitMQ cluster that
// scripts/services/nats-cluster.sh and rabbitmq-cluster.sh start
// (testenv.NATSClusterEnv, testenv.AMQPClusterEnv).
//
// # The node-loss test
//
// A coordinator process and two runtime processes are given the three
// nodes' URLs (on NATS with ?replicas=3, so that every stream and
// consumer has a copy on each node; on RabbitMQ the work queues are
// quorum queues and the event log a stream, replicated on the three
// nodes). A submit process runs a map of short sleeps whose element i
// must come back as "<round>/<i>". Once some tasks are done and many are
// not, the test finds the node the coordinator is connected to — on NATS
// the node whose monitoring endpoint /connz lists the client named
// "skein-coordinator", on RabbitMQ the node whose AMQP port
// `rabbitmqctl list_connections` gives for the connection of that name —
// SIGKILLs it, and checks that the job still ends with every element
// exact, that `submit status` gets an answer from the coordinator while
// the node is down, and that the coordinator moved to another node. The
// node is started again before the next round.
//
// make test runs one round per bus; make chaos runs CHAOS_ROUNDS rounds
// (SKEIN_CLUSTER_ROUNDS), a node of the coordinator's killed in each.
// The programs' logs stay in $SKEIN_TEST_DIR/cluster (else the system's
// temporary directory) for a failed round.
package cluster
