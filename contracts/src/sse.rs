//! Server-Sent Events as `GET /v1/events` frames them (SPEC N-6), parsed the one way every
//! client of the stream here needs it: loadgen's listeners and the tests' client.

use serde_json::Value;

/// One frame: the fields this API sends (`id`, `event`, `data`) or a comment (`: …`, the
/// opening and the heartbeats).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data` lines, joined with `\n` as the SSE standard says.
    pub data: String,
    pub comment: bool,
}

impl Frame {
    /// Parses one frame's lines (the blank line that ends it may be there or not). Unknown
    /// fields (`retry`) and lines without a colon are ignored.
    pub fn parse(raw: &str) -> Frame {
        let mut f = Frame::default();
        let mut data: Vec<&str> = Vec::new();
        for line in raw.lines() {
            if line.starts_with(':') {
                f.comment = true;
                continue;
            }
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => f.id = Some(value.to_owned()),
                "event" => f.event = Some(value.to_owned()),
                "data" => data.push(value),
                _ => {}
            }
        }
        f.data = data.join("\n");
        f
    }

    /// The data as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Takes the first complete frame (ended by a blank line) off the front of `buf`; None while
/// the frame is still incomplete.
pub fn next_frame(buf: &mut String) -> Option<Frame> {
    let end = buf.find("\n\n")?;
    let raw: String = buf.drain(..end + 2).collect();
    Some(Frame::parse(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_whole_and_parsed() {
        let mut buf = String::from(
            ": open\nretry: 1000\n\nid: 7\nevent: ticket.created\ndata: {\"a\":1}\n\nid: 8\nda",
        );
        let opening = next_frame(&mut buf).unwrap();
        assert!(opening.comment && opening.id.is_none());
        let change = next_frame(&mut buf).unwrap();
        assert_eq!(change.id.as_deref(), Some("7"));
        assert_eq!(change.event.as_deref(), Some("ticket.created"));
        assert_eq!(change.json()["a"], 1);
        assert!(!change.comment);
        assert_eq!(next_frame(&mut buf), None, "an incomplete frame waits");
        buf.push_str("ta:x\ndata: y\n\n");
        let split = next_frame(&mut buf).unwrap();
        assert_eq!(
            (split.id.as_deref(), split.data.as_str()),
            (Some("8"), "x\ny")
        );
        assert_eq!(split.json(), Value::Null);
        assert!(buf.is_empty());
    }
}
