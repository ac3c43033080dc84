"""The step-at-a-time Training shared by solo, fused and multi-rank runs (loop.py); checkpoints,
ranks and DeepSpeed, preemption, progress, tracking, what a run used, gradient importance."""
