//! RFC 1035 §5 master file reader: entries, directives and TTL rules, with line numbers.
//!
//! hickory's zone parser stops without saying where, so this module does the lexing and
//! directive handling itself (`$ORIGIN`, `$TTL` from RFC 2308 §4, `$INCLUDE`, `@`, blank owners,
//! parentheses, comments, quoted strings) and hands each record's RDATA text to hickory, which
//! knows the presentation format of every type. Every error names `file:line`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use super::ZoneError;

/// `$INCLUDE` nesting limit: deep enough for any sane layout, shallow enough to stop a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A record read from a master file, with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct SourcedRecord {
    pub(crate) record: Record,
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    /// True when the entry gave its own TTL rather than inheriting one (checked by the tests).
    #[cfg(test)]
    pub(crate) explicit_ttl: bool,
}

/// Reads `path` as the master file of `origin`, following `$INCLUDE`s. Returns the records
/// that parsed and every syntax error, so the caller can also check the good records' data
/// rules and report everything at once.
pub(crate) fn read_zone_file(path: &Path, origin: &Name) -> (Vec<SourcedRecord>, Vec<ZoneError>) {
    let mut reader = Reader::default();
    reader.file(path, origin.clone(), 0, None);
    (reader.records, reader.errors)
}

/// Parses master-file text (for tests).
#[cfg(test)]
fn read_zone_text(
    text: &str,
    path: &Path,
    origin: &Name,
) -> Result<Vec<SourcedRecord>, Vec<ZoneError>> {
    let mut reader = Reader::default();
    reader.text(text, path, origin.clone(), 0);
    if reader.errors.is_empty() {
        Ok(reader.records)
    } else {
        Err(reader.errors)
    }
}

/// One token of an entry: its text as written (escapes kept) and whether it was quoted.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    quoted: bool,
}

impl Token {
    /// The token as it would be written back into a master file.
    fn presentation(&self) -> String {
        if self.quoted {
            format!("\"{}\"", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// A logical entry: one line, or several joined by parentheses.
#[derive(Debug)]
struct Entry {
    line: usize,
    /// The entry began with white space: the owner is the previous owner (RFC 1035 §5.1).
    blank_owner: bool,
    tokens: Vec<Token>,
}

/// Splits master-file text into entries (RFC 1035 §5.1 lexical rules).
fn entries(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut depth = 0usize;
    let mut current: Option<Entry> = None;
    let mut at_line_start = true;
    let mut paren_line = 0;

    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                if depth == 0 {
                    if let Some(e) = current.take()
                        && !e.tokens.is_empty()
                    {
                        out.push(e);
                    }
                    at_line_start = true;
                }
                continue;
            }
            ';' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
                continue;
            }
            ' ' | '\t' | '\r' => {
                if at_line_start && depth == 0 && current.is_none() {
                    current = Some(Entry {
                        line,
                        blank_owner: true,
                        tokens: Vec::new(),
                    });
                }
                at_line_start = false;
                continue;
            }
            _ => {}
        }
        at_line_start = false;
        let entry = current.get_or_insert_with(|| Entry {
            line,
            blank_owner: false,
            tokens: Vec::new(),
        });
        match c {
            '(' => {
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
            }
            ')' => {
                if depth == 0 {
                    return Err((line, "`)` without a matching `(`".into()));
                }
                depth -= 1;
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err((start, "quoted string is not closed".into())),
                        Some('\\') => {
                            s.push('\\');
                            if let Some(n) = chars.next() {
                                if n == '\n' {
                                    line += 1;
                                }
                                s.push(n);
                            }
                        }
                        Some('"') => break,
                        Some(n) => {
                            if n == '\n' {
                                line += 1;
                            }
                            s.push(n);
                        }
                    }
                }
                entry.tokens.push(Token {
                    text: s,
                    quoted: true,
                });
            }
            _ => {
                let mut s = String::from(c);
                if c == '\\'
                    && let Some(n) = chars.next()
                {
                    s.push(n);
                }
                while let Some(&n) = chars.peek() {
                    if matches!(n, ' ' | '\t' | '\r' | '\n' | ';' | '(' | ')' | '"') {
                        break;
                    }
                    chars.next();
                    s.push(n);
                    if n == '\\'
                        && let Some(m) = chars.next()
                    {
                        s.push(m);
                    }
                }
                entry.tokens.push(Token {
                    text: s,
                    quoted: false,
                });
            }
        }
    }
    if depth > 0 {
        return Err((paren_line, "`(` is never closed".into()));
    }
    if let Some(e) = current.take()
        && !e.tokens.is_empty()
    {
        out.push(e);
    }
    Ok(out)
}

/// Reading state across entries and `$INCLUDE`d files.
#[derive(Default)]
struct Reader {
    records: Vec<SourcedRecord>,
    errors: Vec<ZoneError>,
    last_owner: Option<Name>,
    /// TTL of the previous record, the RFC 1035 default when there is no `$TTL`.
    last_ttl: Option<u32>,
    /// `$TTL` value (RFC 2308 §4).
    default_ttl: Option<u32>,
}

impl Reader {
    fn error(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.errors.push(ZoneError::Syntax {
            file: file.to_owned(),
            line,
            message: message.into(),
        });
    }

    fn file(&mut self, path: &Path, origin: Name, depth: usize, from: Option<(&Path, usize)>) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.text(&text, path, origin, depth),
            Err(e) => match from {
                Some((file, line)) => {
                    self.error(file, line, format!("$INCLUDE {}: {e}", path.display()))
                }
                None => self.errors.push(ZoneError::Read {
                    file: path.to_owned(),
                    source: e,
                }),
            },
        }
    }

    fn text(&mut self, text: &str, path: &Path, mut origin: Name, depth: usize) {
        let entries = match entries(text) {
            Ok(e) => e,
            Err((line, message)) => {
                self.error(path, line, message);
                return;
            }
        };
        for entry in entries {
            let first = &entry.tokens[0];
            if !entry.blank_owner && !first.quoted && first.text.starts_with('$') {
                self.directive(&entry, path, &mut origin, depth);
            } else {
                self.record(&entry, path, &origin);
            }
        }
    }

    fn directive(&mut self, entry: &Entry, path: &Path, origin: &mut Name, depth: usize) {
        let line = entry.line;
        let args = &entry.tokens[1..];
        match entry.tokens[0].text.to_ascii_uppercase().as_str() {
            "$ORIGIN" => match args {
                [name] => match parse_name(&name.text, origin) {
                    Ok(n) => *origin = n,
                    Err(e) => self.error(path, line, format!("$ORIGIN: {e}")),
                },
                _ => self.error(path, line, "$ORIGIN takes exactly one domain name"),
            },
            "$TTL" => match args {
                [ttl] => match parse_ttl(&ttl.text) {
                    Ok(t) => self.default_ttl = Some(t),
                    Err(e) => self.error(path, line, format!("$TTL `{}`: {e}", ttl.text)),
                },
                _ => self.error(path, line, "$TTL takes exactly one TTL"),
            },
            "$INCLUDE" => {
                if depth >= MAX_INCLUDE_DEPTH {
                    self.error(path, line, "$INCLUDE nested too deep (a loop?)");
                    return;
                }
                let (file, include_origin) = match args {
                    [file] => (file, origin.clone()),
                    [file, o] => match parse_name(&o.text, origin) {
                        Ok(n) => (file, n),
                        Err(e) => {
                            self.error(path, line, format!("$INCLUDE origin: {e}"));
                            return;
                        }
                    },
                    _ => {
                        self.error(
                            path,
                            line,
                            "$INCLUDE takes a file name and an optional origin",
                        );
                        return;
                    }
                };
                let target = path.parent().unwrap_or(Path::new(".")).join(&file.text);
                // RFC 1035 §5.1: an $INCLUDE never changes the origin or owner of the parent.
                let saved_owner = self.last_owner.clone();
                self.file(&target, include_origin, depth + 1, Some((path, line)));
                self.last_owner = saved_owner;
            }
            other => self.error(
                path,
                line,
                format!("unknown directive `{other}` (supported: $ORIGIN, $TTL, $INCLUDE)"),
            ),
        }
    }

    fn record(&mut self, entry: &Entry, path: &Path, origin: &Name) {
        let line = entry.line;
        let mut tokens = entry.tokens.iter().peekable();

        let owner = if entry.blank_owner {
            match &self.last_owner {
                Some(o) => o.clone(),
                None => {
                    self.error(path, line, "record has no owner and none came before it");
                    return;
                }
            }
        } else {
            let t = tokens.next().expect("entries are never empty");
            match parse_name(&t.text, origin) {
                Ok(n) => n,
                Err(e) => {
                    self.error(path, line, format!("owner `{}`: {e}", t.text));
                    return;
                }
            }
        };
        self.last_owner = Some(owner.clone());

        // [<TTL>] [<class>] <type> or [<class>] [<TTL>] <type> (RFC 1035 §5.1).
        let mut ttl = None;
        let mut class = None;
        let rtype = loop {
            let Some(t) = tokens.next() else {
                self.error(path, line, "record has no type");
                return;
            };
            let upper = t.text.to_ascii_uppercase();
            if ttl.is_none() && t.text.starts_with(|c: char| c.is_ascii_digit()) {
                match parse_ttl(&t.text) {
                    Ok(v) => {
                        ttl = Some(v);
                        continue;
                    }
                    Err(e) => {
                        self.error(path, line, format!("TTL `{}`: {e}", t.text));
                        return;
                    }
                }
            }
            if class.is_none()
                && let Ok(c) = DNSClass::from_str(&upper)
            {
                class = Some(c);
                continue;
            }
            match RecordType::from_str(&upper) {
                Ok(rt) => break rt,
                Err(_) => {
                    self.error(path, line, format!("unknown record type `{}`", t.text));
                    return;
                }
            }
        };
        if let Some(c) = class
            && c != DNSClass::IN
        {
            self.error(path, line, format!("class {c} is not served; only IN"));
            return;
        }
        let explicit_ttl = ttl.is_some();
        let ttl = match ttl.or(self.default_ttl).or(self.last_ttl) {
            Some(t) => t,
            None => {
                self.error(path, line, "no TTL given and no $TTL before this record");
                return;
            }
        };
        if explicit_ttl {
            self.last_ttl = Some(ttl);
        }

        let rdata_tokens: Vec<String> = tokens.map(Token::presentation).collect();
        match parse_rdata(rtype, &rdata_tokens, origin) {
            Ok(rdata) => {
                let mut record = Record::from_rdata(owner, ttl, rdata);
                record.dns_class = DNSClass::IN;
                self.records.push(SourcedRecord {
                    record,
                    file: path.to_owned(),
                    line,
                    #[cfg(test)]
                    explicit_ttl,
                });
            }
            Err(e) => self.error(
                path,
                line,
                format!("{rtype} data `{}`: {e}", rdata_tokens.join(" ")),
            ),
        }
    }
}

/// An owner or origin: `@` is the origin, a name without a final dot is relative to it.
fn parse_name(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    Name::parse(text, Some(origin)).map_err(|e| e.to_string())
}

/// Parses RDATA by giving hickory a one-record zone with the same origin, so relative names in
/// the data (NS, MX, CNAME, SOA, SRV targets) resolve exactly as they would in the real file.
fn parse_rdata(rtype: RecordType, tokens: &[String], origin: &Name) -> Result<RData, String> {
    if tokens.is_empty() {
        return Err("record data is missing".into());
    }
    let text = format!(
        "$ORIGIN {}\n@ 0 IN {rtype} {}\n",
        origin.to_ascii(),
        tokens.join(" ")
    );
    let (_, sets) = Parser::new(text.as_str(), None, None)
        .parse()
        .map_err(|e| e.to_string())?;
    sets.into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .next()
        .map(|r| r.data)
        .ok_or_else(|| "no record parsed".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("cluster.example.").unwrap()
    }

    fn read(text: &str) -> Result<Vec<SourcedRecord>, String> {
        read_zone_text(text, Path::new("z.zone"), &origin()).map_err(|errs| {
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn reads_directives_owners_and_parentheses() {
        let recs = read(
            "$TTL 1h\n\
             @ IN SOA ns1 hostmaster ( 1 ; serial\n 3600 600 86400 60 )\n\
             \tNS ns1\n\
             ns1 300 A 127.0.0.1\n\
             $ORIGIN sub.cluster.example.\n\
             txt IN 30 TXT \"hello; world\" \"(x)\"\n",
        )
        .unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].record.record_type(), RecordType::SOA);
        assert_eq!(recs[0].record.ttl, 3600);
        assert_eq!(recs[1].record.name.to_ascii(), "cluster.example.");
        assert_eq!(recs[1].line, 4);
        assert_eq!(recs[2].record.ttl, 300);
        assert_eq!(recs[3].record.name.to_ascii(), "txt.sub.cluster.example.");
        assert_eq!(recs[3].record.ttl, 30);
        let RData::TXT(txt) = &recs[3].record.data else {
            panic!("not TXT")
        };
        let strings: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
        assert_eq!(strings, [&b"hello; world"[..], &b"(x)"[..]]);
        let RData::NS(ns) = &recs[1].record.data else {
            panic!("not NS")
        };
        assert_eq!(ns.0.to_ascii(), "ns1.cluster.example.");
    }

    #[test]
    fn previous_ttl_applies_without_dollar_ttl() {
        let recs = read("a 60 A 127.0.0.1\nb A 127.0.0.2\n").unwrap();
        assert_eq!(recs[1].record.ttl, 60);
        assert!(!recs[1].explicit_ttl);
    }

    #[test]
    fn errors_name_their_line_and_all_are_kept() {
        let err = read("$TTL 60\na A 127.0.0.300\nb BOGUS x\nc CH TXT x\n(\n").unwrap_err();
        assert!(err.contains("z.zone:5: `(` is never closed"), "{err}");
        let err = read("$TTL 60\na A 127.0.0.300\nb BOGUS x\nc CH TXT x\n").unwrap_err();
        assert!(err.contains("z.zone:2: A data `127.0.0.300`"), "{err}");
        assert!(
            err.contains("z.zone:3: unknown record type `BOGUS`"),
            "{err}"
        );
        assert!(err.contains("z.zone:4: class CH is not served"), "{err}");
        let err = read("a A 127.0.0.1\n").unwrap_err();
        assert!(err.contains("no TTL given"), "{err}");
        let err = read("$GENERATE 1-3 a$ A 127.0.0.$\n").unwrap_err();
        assert!(err.contains("unknown directive `$GENERATE`"), "{err}");
    }

    #[test]
    fn include_keeps_parent_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inc.zone"), "x A 127.0.0.9\n").unwrap();
        let main = dir.path().join("main.zone");
        std::fs::write(
            &main,
            "$TTL 60\n$INCLUDE inc.zone sub.cluster.example.\ny A 127.0.0.8\n",
        )
        .unwrap();
        let (recs, errors) = read_zone_file(&main, &origin());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(recs[0].record.name.to_ascii(), "x.sub.cluster.example.");
        assert_eq!(recs[1].record.name.to_ascii(), "y.cluster.example.");
        assert!(recs[0].file.ends_with("inc.zone"));
    }
}
