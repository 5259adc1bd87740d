"""The deployment kit: Kubernetes (KEDA) and AWS autoscaling manifests rendered from a worker's
own command line, so that what scales the workers agrees with how they run."""
