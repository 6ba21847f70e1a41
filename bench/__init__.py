"""Benchmarks of lockheed against other locks kept in Kubernetes, on a real API server.

``python -m bench`` (``make bench``) starts a local control plane (etcd and
kube-apiserver, see :mod:`lockheed.testing`) or uses ``--kubeconfig``, measures
every system where it can do the operation, prints one table and writes
``report.md``, ``results.json`` and PNG charts under ``--out`` (default
``bench/results``). ``--quick`` runs tiny sizes in about a minute.

Systems: lockheed (sync and asyncio), sherlock's ``KubernetesLock`` and the
official ``kubernetes`` client's leader election (``ConfigMapLock``), and Go
lockheed v0.5.3 through the Go test program ``tests/golockheed``
(:mod:`bench._golockheed`; built from a module-proxy directory holding Go
lockheed v0.5.3, as for the interoperability tests); when it cannot be built,
it is shown as not measured, with the request counts read from its source
labelled as such.

Request counts are never counted on the client: they are read from the API
server's own ``/metrics`` (``apiserver_request_total``) before and after each
batch of operations.

Modules: ``_sizes`` (default and quick sizes), ``_cluster`` (the API server and
namespaces), ``_metrics`` (``/metrics`` snapshots), ``_systems`` (one adapter per
system), ``_golockheed`` (Go lockheed's adapter), ``_worker`` and ``_procs``
(contender processes), ``_ops``, ``_latency``, ``_contention``, ``_renewal``,
``_election``, ``_listing``, ``_imports`` (the figures), ``_kubectl`` (kubectl built from its Go
module), ``_results``, ``_report`` and ``_charts`` (output), ``_runner`` (the order of it all).
"""
