//! The run lock: of ten runs of one `ds` started together exactly one proceeds (on local disk
//! here; on S3 and Garage in `s3.rs`), a live lock makes a run exit 75, and `lifemap unlock`
//! removes it naming its holder.

use crate::common::fixture::{PIPELINE, local_shop};
use crate::common::{Outcome, Project, run, run_expecting};

fn shop_run(project: &Project) -> assert_cmd::Command {
    let mut command = project.lifemap();
    command.args(["run", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    command
}

/// The shop with a step that keeps the winner busy for seconds, so that every other run meets
/// its lock (however slowly ten processes start on a loaded machine), not a finished run.
pub fn slow_shop(project: &Project) {
    let slow = "  - name: slow\n    query: SELECT COUNT(DISTINCT value % 1000003) AS n FROM generate_series(1, 250000000)\noutput:";
    let pipeline = PIPELINE
        .replace("output:", slow)
        .replace("marts:\n", "marts:\n  slow: {}\n");
    project.write("pipelines/shop.yaml", pipeline);
}

/// Start `commands` together (as nearly as threads allow) and collect their outcomes.
pub fn together(commands: Vec<assert_cmd::Command>) -> Vec<Outcome> {
    let barrier = std::sync::Barrier::new(commands.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = commands
            .into_iter()
            .map(|command| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    run(command)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    })
}

/// Exactly one outcome 0 and the others 75 (busy, with the holder named).
pub fn exactly_one_proceeded(outcomes: &[Outcome]) {
    let codes: Vec<i32> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 75).count(),
        outcomes.len() - 1,
        "{codes:?}"
    );
    for outcome in outcomes.iter().filter(|o| o.code == 75) {
        assert!(
            outcome.stderr.contains("another run of this pipeline holds"),
            "{}",
            outcome.stderr
        );
    }
}

#[test]
fn of_ten_runs_of_one_ds_started_together_exactly_one_proceeds() {
    let project = local_shop();
    slow_shop(&project);
    let outcomes = together((0..10).map(|_| shop_run(&project)).collect());
    exactly_one_proceeded(&outcomes);
    assert!(!project.path("out/_runs/ds=2026-10-31/_lock").exists());
    let claims = project.path("out/_runs/ds=2026-10-31/_lock.claims");
    assert!(crate::common::files_below(&claims).is_empty(), "every claim removed");
}

#[test]
fn a_live_lock_held_elsewhere_makes_a_run_wait_and_unlock_removes_it() {
    let project = local_shop();
    let held = serde_json::json!({
        "run_id": "20261031T060000-deadbeef",
        "host": "airflow-worker-7",
        "pid": 4242,
        "acquired_at": "2026-10-31T06:00:00Z",
        "expires_at": "2999-01-01T00:00:00Z",
    });
    project.write("out/_runs/ds=2026-10-31/_lock", held.to_string());
    let refused = run_expecting(shop_run(&project), 75);
    assert!(refused.stderr.contains("airflow-worker-7"), "{}", refused.stderr);

    let mut unlock = project.lifemap();
    unlock.args(["unlock", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    let unlocked = run_expecting(unlock, 0).summary();
    assert_eq!(unlocked["removed"], true);
    assert_eq!(unlocked["holder"]["host"], "airflow-worker-7");
    assert_eq!(unlocked["holder"]["run_id"], "20261031T060000-deadbeef");
    run_expecting(shop_run(&project), 0);

    // Nothing to remove: said so.
    let mut again = project.lifemap();
    again.args(["unlock", "pipelines/shop.yaml", "--ds", "2026-10-31"]);
    assert_eq!(run_expecting(again, 0).summary()["removed"], false);
}

#[test]
fn a_lock_whose_lease_ran_out_elsewhere_is_taken_over_with_a_warning_naming_it() {
    let project = local_shop();
    let expired = serde_json::json!({
        "run_id": "20261031T060000-deadbeef",
        "host": "airflow-worker-7",
        "pid": 4242,
        "acquired_at": "2026-10-31T06:00:00Z",
        "expires_at": "2026-10-31T06:02:00Z",
    });
    project.write("out/_runs/ds=2026-10-31/_lock", expired.to_string());
    let outcome = run_expecting(shop_run(&project), 0);
    assert!(
        outcome.stderr.contains("taking over a stale run lock"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("airflow-worker-7"), "{}", outcome.stderr);
}
