//! `lifemap run --from D --to D`: every date of the range in order, each with its summary line,
//! then one line for the range. A date with no input is skipped; any other failure stops it.

use super::run::{RunArgs, run_date, run_refused};
use crate::error::{Error, exit};
use crate::runner::RunStatus;

pub(super) async fn run(args: RunArgs, progress: bool) -> i32 {
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return super::run::run(args, progress).await;
    };
    if from > to {
        return run_refused(None, Error::Usage(format!("--from {from} is after --to {to}")));
    }
    let mut options = args.options(progress);
    let mut last_code = exit::SUCCESS;
    let mut summaries = Vec::new();
    for ds in from.iter_days().take_while(|d| *d <= to) {
        let outcome = run_date(&args, Some(ds), &options).await;
        // --full-refresh rebuilds the kept state once: the dates after the first reuse it.
        if outcome.exit_code == exit::SUCCESS {
            options.full_refresh = false;
        }
        if outcome.refused {
            return outcome.exit_code;
        }
        summaries.push(outcome.summary);
        last_code = outcome.exit_code;
        if last_code != exit::SUCCESS && last_code != exit::NOTHING_TO_DO {
            break;
        }
    }
    if from == to {
        return last_code;
    }
    let failed = summaries
        .iter()
        .any(|s| s["exit_code"] != exit::SUCCESS && s["exit_code"] != exit::NOTHING_TO_DO);
    let succeeded = summaries.iter().filter(|s| s["exit_code"] == exit::SUCCESS).count();
    let code = if failed {
        last_code
    } else if succeeded == 0 {
        exit::NOTHING_TO_DO
    } else {
        exit::SUCCESS
    };
    let status = RunStatus::of_exit_code(code);
    let line = serde_json::json!({
        "status": status,
        "exit_code": code,
        "from": from.to_string(),
        "to": to.to_string(),
        "runs": summaries,
    });
    println!("{line}");
    code
}
