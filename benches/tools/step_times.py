"""Print what an incremental step did and the slowest steps of a run, from its run_results.json.

    python3 benches/tools/step_times.py RUN_RESULTS_JSON [STEP]
"""
import json
import sys

results = json.load(open(sys.argv[1]))
steps = results["steps"]
wanted = sys.argv[2] if len(sys.argv) > 2 else "staged_events"
for step in steps:
    if step["name"] == wanted and step.get("details"):
        print(f"  {wanted}: {json.dumps(step['details'].get('incremental', step['details']))}")
slowest = sorted(steps, key=lambda step: -step["duration_ms"])[:6]
print("  slowest steps (s): " + ", ".join(f"{step['name']} {step['duration_ms'] / 1000:.1f}" for step in slowest))
