//! Temporary stub: replaced by the RFC 6570 matcher.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub position: usize,
    pub reason: &'static str,
}
impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Err(TemplateError {
            position: source.len(),
            reason: "unsupported",
        })
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn matches(&self, topic: &str) -> bool {
        topic == self.source
    }
}
pub fn looks_like_template(s: &str) -> bool {
    s.contains('{')
}
