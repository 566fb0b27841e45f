//! JSON text built from exact values: decimals and wire numbers are written with their digits,
//! never through `f64`.

use fieldsync_core::Wire;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

/// Writes a decimal as a JSON number with exactly its digits.
pub(crate) fn decimal_number(amount: &Decimal) -> Box<RawValue> {
    // A Decimal's text is always a valid JSON number, so the `null` fallback is never taken.
    RawValue::from_string(amount.to_string()).unwrap_or_default()
}

/// Writes a JSON string.
pub(crate) fn string(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(text).unwrap_or_default()
}

/// Writes `null`.
pub(crate) fn null() -> Box<RawValue> {
    Box::<RawValue>::default()
}

/// Writes a wire value as JSON text, numbers from their literal text. Returns `None` if a number
/// literal is not valid JSON.
pub(crate) fn wire_text(wire: &Wire) -> Option<String> {
    let mut text = String::new();
    write_wire(wire, &mut text);
    RawValue::from_string(text).ok().map(|raw| raw.get().to_owned())
}

fn write_wire(wire: &Wire, out: &mut String) {
    match wire {
        Wire::Null => out.push_str("null"),
        Wire::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Wire::Number(literal) => out.push_str(literal),
        Wire::Text(text) => out.push_str(string(text).get()),
        Wire::List(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_wire(item, out);
            }
            out.push(']');
        }
        Wire::Map(members) => {
            out.push('{');
            for (index, (name, value)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(string(name).get());
                out.push(':');
                write_wire(value, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_keeps_number_literals() {
        let wire = Wire::parse(br#"[{"customer":"C-100","unit_price":17.50},{"note":"a\"b"}]"#).unwrap();
        assert_eq!(
            wire_text(&wire).unwrap(),
            r#"[{"customer":"C-100","unit_price":17.50},{"note":"a\"b"}]"#
        );
    }

    #[test]
    fn wire_text_rejects_invalid_literal() {
        assert_eq!(wire_text(&Wire::Number("1..2".to_owned())), None);
    }
}
