//! How every command ends: errors on stderr with their causes and a hint, an exit code.

use crate::error::{Error, exit};

/// Print an error the way every command does: `error:` and a `hint:` when there is one.
pub fn print_error(err: &Error) {
    match err {
        Error::Invalid(diagnostics) => eprintln!("error: {diagnostics}"),
        other => {
            eprintln!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !other.to_string().contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                source = cause.source();
            }
        }
    }
    if let Some(hint) = err.hint() {
        eprintln!("  hint: {hint}");
    }
}

pub(super) fn report(outcome: Result<(), Error>) -> i32 {
    match outcome {
        Ok(()) => exit::SUCCESS,
        Err(err) => {
            print_error(&err);
            err.exit_code()
        }
    }
}
