//! Files a pipeline names (SQL, templates, certificates): read from inside their folder only.

use std::path::{Path, PathBuf};

/// `dir/name`, when `name` is a relative path that stays inside `dir`: a pipeline cannot make
/// lifemap read (and put into SQL or an email) a file outside its SQL or template folder.
pub(crate) fn file_inside(dir: &Path, name: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let relative = Path::new(name);
    if name.is_empty()
        || relative
            .components()
            .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{name}` is not a file inside {}: no absolute paths and no `..`",
            dir.display()
        ));
    }
    Ok(dir.join(relative))
}

/// The text of `dir/name` (see `file_inside`), or a message naming `what` and the path.
pub(crate) fn read_inside(dir: &Path, name: &str, what: &str) -> Result<(PathBuf, String), String> {
    let path = file_inside(dir, name)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(err) => Err(format!("cannot read {what} {}: {err}", path.display())),
    }
}

/// `pipelines/../sql` → `sql`, so messages show the paths people wrote.
pub(super) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}
