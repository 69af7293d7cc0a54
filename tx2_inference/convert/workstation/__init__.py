"""The converter's TensorFlow stage: runs on a workstation (TensorFlow, newer Python)."""
