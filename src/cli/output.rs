//! How every command ends: errors on stderr with their causes and a hint, an exit code.

use crate::error::{Error, exit};

/// Print an error the way every command does: `error:` and a `hint:` when there is one.
pub fn print_error(err: &Error) {
    print_error_lines(err);
    if let Some(hint) = err.hint() {
        eprintln!("  hint: {hint}");
    }
}

/// The error and its causes, without the hint.
pub(super) fn print_error_lines(err: &Error) {
    let mut lines = err.render().into_iter();
    if let Some(message) = lines.next() {
        eprintln!("error: {message}");
    }
    for cause in lines {
        eprintln!("  caused by: {cause}");
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
