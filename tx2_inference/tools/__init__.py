"""Tools around the node: camera player, echo node, demo, soak, benchmark, test client."""
