"""A local Valkey Cluster for development: `fraudstream cluster up|status|down`.

Its nodes are started from the embedded binary the way the single server is (see
`fraudstream.valkey.server_config`), in cluster mode, each in ``data_dir/cluster/<port>/``;
`fraudstream.cluster.forming` makes them one cluster, `fraudstream.cluster.nodes` reads what
each node says about itself.
"""

from __future__ import annotations

from fraudstream.cluster.forming import Layout, NodeSpec
from fraudstream.cluster.local import LocalCluster
from fraudstream.cluster.nodes import NodeStatus, cluster_url, parse_cluster_url

__all__ = ["Layout", "LocalCluster", "NodeSpec", "NodeStatus", "cluster_url", "parse_cluster_url"]
