"""The routing table of the ingress nodes: built from deployments, their ready
replicas' published ports and the domain suffix (`table`), and kept applied on every
ingress node (`publisher`). See docs/ingress.md."""
