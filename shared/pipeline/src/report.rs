//! Error text for logs.

use std::error::Error;
use std::fmt;

/// An error and each of its sources joined by ": ", for one log field. Error types here keep
/// their `Display` to their own message, so a log line needs this to show the cause.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::ports::SystemError;
    use fieldsync_core::SystemId;

    use super::*;

    #[test]
    fn chain_joins_each_source_once() {
        let error = SystemError::Unavailable {
            system: SystemId::new("erp"),
            source: "HTTP 401 Unauthorized".into(),
        };
        assert_eq!(ErrorChain(&error).to_string(), "erp unavailable: HTTP 401 Unauthorized");
    }
}
