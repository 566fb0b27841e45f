//! Finding the root field of a GraphQL request and binding its arguments, without a full parser.
//!
//! The scanner reads only what the sandbox needs: the field names at the top level of the
//! operation's selection set, and each argument list, whose values may be variables, scalars,
//! enum values, lists or input objects. Selections below the root field are ignored, because the
//! sandbox always returns a fixed superset of fields for each root field.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The root fields the sandbox implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootField {
    ProductSet,
    ProductUpdate,
    ProductVariantsBulkUpdate,
    InventorySetQuantities,
    MetafieldsSet,
    ProductVariants,
    InventoryItem,
    WebhookSubscriptions,
    WebhookSubscriptionCreate,
    WebhookSubscriptionUpdate,
}

impl RootField {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "productSet" => Some(Self::ProductSet),
            "productUpdate" => Some(Self::ProductUpdate),
            "productVariantsBulkUpdate" => Some(Self::ProductVariantsBulkUpdate),
            "inventorySetQuantities" => Some(Self::InventorySetQuantities),
            "metafieldsSet" => Some(Self::MetafieldsSet),
            "productVariants" => Some(Self::ProductVariants),
            "inventoryItem" => Some(Self::InventoryItem),
            "webhookSubscriptions" => Some(Self::WebhookSubscriptions),
            "webhookSubscriptionCreate" => Some(Self::WebhookSubscriptionCreate),
            "webhookSubscriptionUpdate" => Some(Self::WebhookSubscriptionUpdate),
            _ => None,
        }
    }

    /// Returns the field name as written in queries and as the key of `data` in responses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ProductSet => "productSet",
            Self::ProductUpdate => "productUpdate",
            Self::ProductVariantsBulkUpdate => "productVariantsBulkUpdate",
            Self::InventorySetQuantities => "inventorySetQuantities",
            Self::MetafieldsSet => "metafieldsSet",
            Self::ProductVariants => "productVariants",
            Self::InventoryItem => "inventoryItem",
            Self::WebhookSubscriptions => "webhookSubscriptions",
            Self::WebhookSubscriptionCreate => "webhookSubscriptionCreate",
            Self::WebhookSubscriptionUpdate => "webhookSubscriptionUpdate",
        }
    }

    pub(crate) fn is_mutation(self) -> bool {
        !matches!(
            self,
            Self::ProductVariants | Self::InventoryItem | Self::WebhookSubscriptions
        )
    }
}

/// The root field of a request, its response key (the alias, if any) and its bound arguments.
#[derive(Debug)]
pub(crate) struct RootCall {
    pub(crate) field: RootField,
    pub(crate) response_key: String,
    /// Argument values as JSON text, variables already substituted. Arguments bound to a
    /// variable that the request did not supply are absent.
    pub(crate) arguments: BTreeMap<String, Box<RawValue>>,
}

/// An error that keeps a query from mapping to one implemented root field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    #[error("the query selects no field")]
    NoField,
    #[error("field '{0}' is not implemented by the sandbox")]
    Unsupported(String),
    #[error("the sandbox runs one root field per request, but the query selects {0}")]
    SeveralFields(usize),
    #[error("invalid query syntax near byte {0}")]
    Syntax(usize),
}

/// Finds the single root field of `query` and binds its arguments to `variables`.
pub(crate) fn parse_root_call(
    query: &str,
    variables: &BTreeMap<String, Box<RawValue>>,
) -> Result<RootCall, QueryError> {
    let mut scanner = Scanner {
        text: query.as_bytes(),
        source: query,
        position: 0,
        variables,
    };
    let mut calls = Vec::new();
    let mut depth = 0usize;

    while let Some(byte) = scanner.peek_significant() {
        match byte {
            b'{' => {
                depth += 1;
                scanner.position += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                scanner.position += 1;
            }
            b'(' if depth == 0 => scanner.skip_balanced(b'(', b')')?,
            b'"' => scanner.skip_string()?,
            _ if depth == 1 && is_name_start(byte) => calls.push(scanner.root_selection()?),
            _ if depth == 1 && byte == b'.' => return Err(QueryError::Unsupported("fragment spread".to_owned())),
            _ => scanner.position += 1,
        }
    }

    match calls.len() {
        0 => Err(QueryError::NoField),
        1 => calls.pop().ok_or(QueryError::NoField),
        count => Err(QueryError::SeveralFields(count)),
    }
}

struct Scanner<'a> {
    text: &'a [u8],
    source: &'a str,
    position: usize,
    variables: &'a BTreeMap<String, Box<RawValue>>,
}

impl<'a> Scanner<'a> {
    /// Skips white space, commas and comments, and returns the next byte.
    fn peek_significant(&mut self) -> Option<u8> {
        while let Some(&byte) = self.text.get(self.position) {
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.position += 1,
                b'#' => {
                    while self.text.get(self.position).is_some_and(|&byte| byte != b'\n') {
                        self.position += 1;
                    }
                }
                _ => return Some(byte),
            }
        }
        None
    }

    fn name(&mut self) -> Result<&'a str, QueryError> {
        let start = self.position;
        while self.text.get(self.position).is_some_and(|&byte| is_name_continue(byte)) {
            self.position += 1;
        }
        if start == self.position {
            return Err(QueryError::Syntax(start));
        }
        Ok(&self.source[start..self.position])
    }

    /// Reads `alias: field(arguments)` or `field(arguments)` at the top of the selection set,
    /// and skips the field's own selection set.
    fn root_selection(&mut self) -> Result<RootCall, QueryError> {
        let first = self.name()?.to_owned();
        let (response_key, field_name) = if self.peek_significant() == Some(b':') {
            self.position += 1;
            self.peek_significant();
            (first, self.name()?.to_owned())
        } else {
            (first.clone(), first)
        };
        let field = RootField::from_name(&field_name).ok_or(QueryError::Unsupported(field_name))?;

        let mut arguments = BTreeMap::new();
        if self.peek_significant() == Some(b'(') {
            self.position += 1;
            loop {
                match self.peek_significant() {
                    Some(b')') => {
                        self.position += 1;
                        break;
                    }
                    Some(byte) if is_name_start(byte) => {
                        let name = self.name()?.to_owned();
                        self.expect(b':')?;
                        if let Some(value) = self.value()? {
                            let raw = RawValue::from_string(value).map_err(|_| QueryError::Syntax(self.position))?;
                            arguments.insert(name, raw);
                        }
                    }
                    _ => return Err(QueryError::Syntax(self.position)),
                }
            }
        }
        if self.peek_significant() == Some(b'{') {
            self.skip_balanced(b'{', b'}')?;
        }
        Ok(RootCall {
            field,
            response_key,
            arguments,
        })
    }

    fn expect(&mut self, expected: u8) -> Result<(), QueryError> {
        if self.peek_significant() == Some(expected) {
            self.position += 1;
            Ok(())
        } else {
            Err(QueryError::Syntax(self.position))
        }
    }

    /// Reads one GraphQL input value and returns it as JSON text, or `None` for a variable the
    /// request did not supply.
    fn value(&mut self) -> Result<Option<String>, QueryError> {
        let next = self.peek_significant();
        let start = self.position;
        match next {
            Some(b'$') => {
                self.position += 1;
                let name = self.name()?;
                Ok(self.variables.get(name).map(|raw| raw.get().to_owned()))
            }
            Some(b'"') => {
                self.skip_string()?;
                Ok(Some(self.source[start..self.position].to_owned()))
            }
            Some(b'[') => {
                self.position += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek_significant() == Some(b']') {
                        self.position += 1;
                        break;
                    }
                    items.push(self.value()?.unwrap_or_else(|| "null".to_owned()));
                }
                Ok(Some(format!("[{}]", items.join(","))))
            }
            Some(b'{') => {
                self.position += 1;
                let mut members = Vec::new();
                loop {
                    match self.peek_significant() {
                        Some(b'}') => {
                            self.position += 1;
                            break;
                        }
                        Some(byte) if is_name_start(byte) => {
                            let name = self.name()?.to_owned();
                            self.expect(b':')?;
                            if let Some(value) = self.value()? {
                                members.push(format!("\"{name}\":{value}"));
                            }
                        }
                        _ => return Err(QueryError::Syntax(self.position)),
                    }
                }
                Ok(Some(format!("{{{}}}", members.join(","))))
            }
            Some(byte) if byte == b'-' || byte.is_ascii_digit() => {
                while self
                    .text
                    .get(self.position)
                    .is_some_and(|&byte| byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.position += 1;
                }
                Ok(Some(self.source[start..self.position].to_owned()))
            }
            Some(byte) if is_name_start(byte) => {
                let name = self.name()?;
                let json = match name {
                    "true" | "false" | "null" => name.to_owned(),
                    // An enum value travels as its name, as in a JSON variable.
                    enum_value => format!("\"{enum_value}\""),
                };
                Ok(Some(json))
            }
            _ => Err(QueryError::Syntax(start)),
        }
    }

    fn skip_string(&mut self) -> Result<(), QueryError> {
        let start = self.position;
        self.position += 1;
        while let Some(&byte) = self.text.get(self.position) {
            self.position += 1;
            match byte {
                b'\\' => self.position += 1,
                b'"' => return Ok(()),
                _ => {}
            }
        }
        Err(QueryError::Syntax(start))
    }

    fn skip_balanced(&mut self, open: u8, close: u8) -> Result<(), QueryError> {
        let start = self.position;
        let mut depth = 0usize;
        while let Some(&byte) = self.text.get(self.position) {
            if byte == b'"' {
                self.skip_string()?;
                continue;
            }
            self.position += 1;
            if byte == open {
                depth += 1;
            } else if byte == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
        }
        Err(QueryError::Syntax(start))
    }
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_name_continue(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(json: &str) -> BTreeMap<String, Box<RawValue>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn root_field_binds_variables_by_argument_name() {
        let query = "mutation Update($p: ProductUpdateInput!) {\n  productUpdate(product: $p) {\n    product { id }\n    userErrors { field message }\n  }\n}";
        let call = parse_root_call(query, &variables(r#"{"p":{"title":"Mug"}}"#)).unwrap();
        assert_eq!(call.field, RootField::ProductUpdate);
        assert_eq!(call.arguments["product"].get(), r#"{"title":"Mug"}"#);
    }

    #[test]
    fn nested_product_variants_selection_is_not_a_root() {
        let query = "mutation($id: ID!, $v: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $id, variants: $v) { productVariants { id price } userErrors { field message } } }";
        let call = parse_root_call(query, &variables(r#"{"id":"gid://shopify/Product/1","v":[]}"#)).unwrap();
        assert_eq!(call.field, RootField::ProductVariantsBulkUpdate);
        assert_eq!(call.arguments.len(), 2);
    }

    #[test]
    fn literal_arguments_become_json() {
        let query = r#"{ found: productVariants(first: 5, query: "sku:MUG-RED") { nodes { id } } }"#;
        let call = parse_root_call(query, &BTreeMap::new()).unwrap();
        assert_eq!(call.field, RootField::ProductVariants);
        assert_eq!(call.response_key, "found");
        assert_eq!(call.arguments["first"].get(), "5");
        assert_eq!(call.arguments["query"].get(), r#""sku:MUG-RED""#);
    }

    #[test]
    fn input_object_literal_with_enum_and_variable() {
        let query = "mutation($t: String) { productUpdate(product: {id: \"gid://shopify/Product/1\", status: DRAFT, title: $t, seo: {title: $missing}}) { userErrors { message } } }";
        let call = parse_root_call(query, &variables(r#"{"t":"Mug"}"#)).unwrap();
        let product: serde_json::Value = serde_json::from_str(call.arguments["product"].get()).unwrap();
        assert_eq!(product["status"], "DRAFT");
        assert_eq!(product["title"], "Mug");
        assert_eq!(product["seo"], serde_json::json!({}));
    }

    #[test]
    fn unknown_and_multiple_fields_are_rejected() {
        assert_eq!(
            parse_root_call("{ shop { name } }", &BTreeMap::new()).unwrap_err(),
            QueryError::Unsupported("shop".to_owned())
        );
        assert_eq!(
            parse_root_call(
                "{ a: productVariants(first: 1) { nodes { id } } b: productVariants(first: 2) { nodes { id } } }",
                &BTreeMap::new()
            )
            .unwrap_err(),
            QueryError::SeveralFields(2)
        );
        assert_eq!(
            parse_root_call("query { }", &BTreeMap::new()).unwrap_err(),
            QueryError::NoField
        );
    }
}
