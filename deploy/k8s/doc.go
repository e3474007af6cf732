// Package k8s holds Skein's Kubernetes manifests (see README.md) and the
// offline test that checks them: every manifest parses as YAML and has the
// fields Kubernetes and KEDA require, and the references between objects
// (selectors, Secrets, ConfigMaps, scale targets) resolve.
package k8s
