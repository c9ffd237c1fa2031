//! `${NAME}` and `${NAME:-default}` environment interpolation of pipeline settings.
//!
//! Applied to parsed string values (never to the raw YAML text), so a value from the environment can
//! not change the file's structure, and the YAML parser's line numbers stay true. `$${` writes a
//! literal `${`.

/// A string after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    /// Whether any part came from the environment; such values are kept out of logs and results.
    pub from_env: bool,
}

/// Why a placeholder could not be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    /// The placeholder as written, e.g. `${S3_ENDPOINT`.
    pub placeholder: String,
    pub message: String,
}

/// Fill every placeholder of `input` from `lookup` (the process environment in production).
pub fn interpolate(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Interpolated, InterpolationError> {
    let mut value = String::with_capacity(input.len());
    let mut from_env = false;
    let mut rest = input;
    while let Some(start) = rest.find('$') {
        value.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(stripped) = after.strip_prefix("$${") {
            value.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            value.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(InterpolationError {
                placeholder: after.to_string(),
                message: "unclosed `${`: expected `${NAME}` or `${NAME:-default}`".into(),
            });
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        let placeholder = format!("${{{name}");
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(InterpolationError {
                placeholder,
                message: format!(
                    "`${{{body}}}` is not a valid placeholder: a variable name is letters, digits and `_`"
                ),
            });
        }
        match (lookup(name), default) {
            // Like a shell, `${X:-d}` takes the default when X is set but empty.
            (Some(found), Some(default)) if found.is_empty() => value.push_str(default),
            (Some(found), _) => {
                value.push_str(&found);
                from_env = true;
            }
            (None, Some(default)) => value.push_str(default),
            (None, None) => {
                return Err(InterpolationError {
                    placeholder,
                    message: format!(
                        "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                    ),
                });
            }
        }
        rest = &body_start[end + 1..];
    }
    value.push_str(rest);
    Ok(Interpolated { value, from_env })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BUCKET" => Some("acme".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn fills_set_variables_and_defaults() {
        let out = interpolate("s3://${BUCKET}/x/${MISSING:-y}", &env).unwrap();
        assert_eq!(out.value, "s3://acme/x/y");
        assert!(out.from_env);
        let plain = interpolate("a $ b ${MISSING:-}", &env).unwrap();
        assert_eq!(plain.value, "a $ b ");
        assert!(!plain.from_env);
    }

    #[test]
    fn empty_value_takes_the_default_like_a_shell() {
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap().value, "d");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap().value, "");
    }

    #[test]
    fn escapes_and_errors() {
        assert_eq!(interpolate("$${BUCKET}", &env).unwrap().value, "${BUCKET}");
        let missing = interpolate("x${NOPE}", &env).unwrap_err();
        assert_eq!(missing.placeholder, "${NOPE");
        assert!(missing.message.contains("`NOPE` is not set"), "{}", missing.message);
        assert!(
            interpolate("${BAD-NAME}", &env)
                .unwrap_err()
                .message
                .contains("not a valid")
        );
        assert!(interpolate("${OPEN", &env).unwrap_err().message.contains("unclosed"));
    }
}
