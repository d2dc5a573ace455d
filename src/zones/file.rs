//! RFC 1035 §5 master file reader: entries, directives and TTL rules, with line numbers.
//!
//! hickory's zone parser stops without saying where, so this module does the lexing and
//! directive handling itself (`$ORIGIN`, `$TTL` from RFC 2308 §4, `$INCLUDE`, `@`, blank owners,
//! parentheses, comments, quoted strings) and hands each record's RDATA text to hickory, which
//! knows the presentation format of every type. Every error names `file:line`.
//!
//! A zone file is data, possibly written by another system, so reading one is bounded:
//! `$INCLUDE` reads only regular files under the config file's directory or `[server]
//! include_dirs` (checked after symlinks are resolved), a zone's files hold at most
//! [`MAX_ZONE_BYTES`] together and a line at most [`MAX_LINE_BYTES`], and an error quotes at
//! most a short, escaped excerpt of what it is about — never a whole line of a file.

use std::fs::File;
use std::io::{self, BufRead};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use super::ZoneError;

/// `$INCLUDE` nesting limit: deep enough for any sane layout, shallow enough to stop a loop.
const MAX_INCLUDE_DEPTH: usize = 16;
/// What one zone's files (its own and every `$INCLUDE`) may hold together: room for several
/// million records, and a bound on what a load can cost in memory.
pub(crate) const MAX_ZONE_BYTES: u64 = 256 << 20;
/// Longest line. An RDATA is at most 65,535 octets (RFC 1035 §3.2.1) and a long one can be split
/// over lines in parentheses.
pub(crate) const MAX_LINE_BYTES: usize = 64 << 10;
/// Problems reported per zone; the rest are counted.
const MAX_ERRORS: usize = 100;
/// Characters of a token quoted in an error.
const EXCERPT: usize = 32;
/// Characters of a path or a parser's message quoted in an error.
const EXCERPT_LONG: usize = 96;

/// `text` quoted for an error: at most `max` characters, anything but printable ASCII written
/// as `\DDD` (RFC 1035 §5.1) per byte, and `...` when cut short. An error about a file shows
/// what is wrong without copying the file.
fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

/// A token as an error quotes it.
fn quote(text: &str) -> String {
    excerpt(text, EXCERPT)
}

/// A parser's message as an error repeats it: it may quote the input.
fn said(e: impl std::fmt::Display) -> String {
    excerpt(&e.to_string(), EXCERPT_LONG)
}

/// Why a file was not read.
#[derive(Debug)]
enum Refused {
    /// The OS said no (missing, permissions), or it is not UTF-8.
    Io(io::Error),
    /// A directory, device, FIFO or socket.
    NotRegular(&'static str),
    /// Larger than what is left of the zone's budget.
    TooLarge { size: u64, budget: u64 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Io(e) => write!(f, "{e}"),
            Refused::NotRegular(kind) => write!(f, "not a regular file but {kind}"),
            Refused::TooLarge { size, budget } if *budget < MAX_ZONE_BYTES => write!(
                f,
                "{size} bytes or more: with the files before it, over the {} MiB a zone's \
                 files may hold together",
                MAX_ZONE_BYTES >> 20
            ),
            Refused::TooLarge { size, .. } => write!(
                f,
                "{size} bytes or more, over the {} MiB a zone's files may hold",
                MAX_ZONE_BYTES >> 20
            ),
        }
    }
}

/// What identifies one version of a file: if none of it changed, neither did the file (a
/// write changes the modification and change times; a replacement, the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of the file at `path` now, if it can be read.
    pub(crate) fn now(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
    }
}

/// A file a zone was read from, and its version then.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) stamp: Stamp,
}

/// Where each record read goes: the zone builder, or a test's list.
pub(crate) trait Sink {
    /// One record: `owner` is its name and `rdata` its RDATA, in uncompressed wire format;
    /// `file` indexes the sources [`read_zone_file`] returns.
    fn record(
        &mut self,
        owner: &[u8],
        rtype: RecordType,
        ttl: u32,
        rdata: &[u8],
        file: u32,
        line: usize,
    );
}

/// Opens `path` for reading at most `budget` bytes. Checked on the open file (fstat), so a
/// device, a FIFO or a huge sparse file is refused without reading a byte; the reader stops at
/// `budget` whatever the size said. `nofollow`: refuse a symlink as the last component (for an
/// `$INCLUDE` target already resolved).
fn open_bounded(path: &Path, budget: u64, nofollow: bool) -> Result<(File, Stamp), Refused> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
    let file = File::options()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(Refused::Io)?;
    let meta = file.metadata().map_err(Refused::Io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(Refused::NotRegular(if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        }));
    }
    if meta.len() > budget {
        return Err(Refused::TooLarge {
            size: meta.len(),
            budget,
        });
    }
    Ok((file, Stamp::of(&meta)))
}

/// Why a line could not be had.
enum LineError {
    Io(io::Error),
    TooLong,
    TooLarge,
}

/// Reads a file line by line, each at most [`MAX_LINE_BYTES`], all together at most a budget:
/// the file is never held whole.
struct Lines<'a> {
    input: Box<dyn BufRead + 'a>,
    budget: u64,
    read: u64,
    buf: Vec<u8>,
}

impl<'a> Lines<'a> {
    fn new(input: impl BufRead + 'a, budget: u64) -> Lines<'a> {
        Lines {
            input: Box::new(input),
            budget,
            read: 0,
            buf: Vec::new(),
        }
    }

    /// The next line without its newline, or `None` at the end.
    fn next_line(&mut self) -> Result<Option<&[u8]>, LineError> {
        self.buf.clear();
        loop {
            let chunk = self.input.fill_buf().map_err(LineError::Io)?;
            if chunk.is_empty() {
                return Ok((!self.buf.is_empty()).then_some(&self.buf[..]));
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let line_part = &chunk[..if done { take - 1 } else { take }];
            if self.buf.len() + line_part.len() > MAX_LINE_BYTES {
                return Err(LineError::TooLong);
            }
            self.buf.extend_from_slice(line_part);
            self.input.consume(take);
            self.read += take as u64;
            if self.read > self.budget {
                return Err(LineError::TooLarge);
            }
            if done {
                return Ok(Some(&self.buf[..]));
            }
        }
    }
}

/// One token of an entry: its text as written (escapes kept) and whether it was quoted.
#[derive(Debug, Clone, Default, PartialEq)]
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

/// Splits master-file text into entries (RFC 1035 §5.1 lexical rules), one line at a time: an
/// entry is one line, or several joined by parentheses (or by a quoted string across lines).
/// Token buffers are reused from entry to entry.
#[derive(Default)]
struct Lexer {
    tokens: Vec<Token>,
    /// Tokens of the current entry (the rest are spare buffers).
    used: usize,
    /// Line where the current entry began, if it has begun.
    line: Option<usize>,
    /// The entry began with white space: the owner is the previous owner (RFC 1035 §5.1).
    blank_owner: bool,
    depth: usize,
    paren_line: usize,
    /// Inside a quoted string that began on this line.
    quote_line: Option<usize>,
}

impl Lexer {
    fn tokens(&self) -> &[Token] {
        &self.tokens[..self.used]
    }

    fn begin(&mut self, line: usize, blank_owner: bool) {
        if self.line.is_none() {
            self.line = Some(line);
            self.blank_owner = blank_owner;
        }
    }

    fn new_token(&mut self, quoted: bool) -> &mut String {
        if self.used == self.tokens.len() {
            self.tokens.push(Token::default());
        }
        let t = &mut self.tokens[self.used];
        self.used += 1;
        t.text.clear();
        t.quoted = quoted;
        &mut t.text
    }

    /// Forgets the entry just handed out.
    fn clear(&mut self) {
        self.used = 0;
        self.line = None;
        self.blank_owner = false;
    }

    /// Feeds line number `n`; true when it completes an entry (read it with `tokens`).
    fn feed(&mut self, text: &str, n: usize) -> Result<bool, (usize, String)> {
        let mut chars = text.chars().peekable();
        if self.quote_line.is_some() {
            // A quoted string continues from the line before.
            let mut s = std::mem::take(&mut self.tokens[self.used - 1].text);
            s.push('\n');
            let closed = quoted_rest(&mut chars, &mut s);
            self.tokens[self.used - 1].text = s;
            if !closed {
                return Ok(false);
            }
            self.quote_line = None;
        } else if matches!(chars.peek(), Some(' ' | '\t' | '\r')) && self.depth == 0 {
            self.begin(n, true);
        }
        while let Some(c) = chars.next() {
            match c {
                ';' => break,
                ' ' | '\t' | '\r' => continue,
                '(' => {
                    self.begin(n, false);
                    if self.depth == 0 {
                        self.paren_line = n;
                    }
                    self.depth += 1;
                }
                ')' => {
                    if self.depth == 0 {
                        return Err((n, "`)` without a matching `(`".into()));
                    }
                    self.depth -= 1;
                }
                '"' => {
                    self.begin(n, false);
                    let s = self.new_token(true);
                    let mut text = std::mem::take(s);
                    let closed = quoted_rest(&mut chars, &mut text);
                    self.tokens[self.used - 1].text = text;
                    if !closed {
                        self.quote_line = Some(n);
                        return Ok(false);
                    }
                }
                _ => {
                    self.begin(n, false);
                    let s = self.new_token(false);
                    s.push(c);
                    if c == '\\'
                        && let Some(next) = chars.next()
                    {
                        s.push(next);
                    }
                    while let Some(&next) = chars.peek() {
                        if matches!(next, ' ' | '\t' | '\r' | ';' | '(' | ')' | '"') {
                            break;
                        }
                        chars.next();
                        s.push(next);
                        if next == '\\'
                            && let Some(m) = chars.next()
                        {
                            s.push(m);
                        }
                    }
                }
            }
        }
        if self.depth > 0 {
            return Ok(false);
        }
        if self.used == 0 {
            // A blank or comment line: nothing began.
            self.clear();
            return Ok(false);
        }
        Ok(true)
    }

    /// At the end of the file: an open parenthesis or quote is an error.
    fn end(&self) -> Result<(), (usize, String)> {
        if let Some(line) = self.quote_line {
            return Err((line, "quoted string is not closed".into()));
        }
        if self.depth > 0 {
            return Err((self.paren_line, "`(` is never closed".into()));
        }
        Ok(())
    }
}

/// Reads a quoted string's text up to its closing quote (escapes kept); false if the line
/// ends first.
fn quoted_rest(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, s: &mut String) -> bool {
    loop {
        match chars.next() {
            None => return false,
            Some('\\') => {
                s.push('\\');
                match chars.next() {
                    Some(n) => s.push(n),
                    // An escaped line end: the newline is part of the string.
                    None => return false,
                }
            }
            Some('"') => return true,
            Some(n) => s.push(n),
        }
    }
}

/// Reads `path` as the master file of `origin`, following `$INCLUDE`s, and hands every record
/// that parses to `sink` as it is read. Returns every syntax error (so the caller can also
/// check the good records' data rules and report everything at once) and the files read, in
/// the order `Sink::record`'s `file` indexes them.
/// `$INCLUDE` may name only files under `include_dirs`.
pub(crate) fn read_zone_file(
    path: &Path,
    origin: &Name,
    include_dirs: &[PathBuf],
    sink: &mut dyn Sink,
) -> (Vec<ZoneError>, Vec<Source>) {
    // Resolved once, symlinks included, so a target is compared with where a directory really
    // is. One that does not exist allows nothing.
    let include_roots = include_dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    let mut reader = Reader::new(sink, include_roots);
    reader.file(path, origin.clone(), 0, None);
    if let Some((file, line)) = reader.first_suppressed.take() {
        let n = reader.suppressed;
        reader.errors.push(ZoneError::Syntax {
            file,
            line,
            message: format!("{n} more problems from here on, not shown"),
        });
    }
    (reader.errors, reader.sources)
}

/// Reading state across entries and `$INCLUDE`d files.
struct Reader<'s> {
    sink: &'s mut dyn Sink,
    errors: Vec<ZoneError>,
    /// Problems found past [`MAX_ERRORS`], and where the first of them is.
    suppressed: usize,
    first_suppressed: Option<(PathBuf, usize)>,
    /// Where `$INCLUDE` may read, resolved.
    include_roots: Vec<PathBuf>,
    /// The files being read, the zone's own first, each `$INCLUDE`d one after the file that
    /// includes it: a file that includes one of these is a loop, and each of its `$INCLUDE`s
    /// would double the work down to the depth limit.
    reading: Vec<PathBuf>,
    /// Every file opened, in order.
    sources: Vec<Source>,
    /// Bytes the zone's files may still hold.
    budget: u64,
    /// The previous record's owner, in wire format.
    last_owner: Option<Vec<u8>>,
    /// TTL of the previous record, the RFC 1035 default when there is no `$TTL`.
    last_ttl: Option<u32>,
    /// `$TTL` value (RFC 2308 §4).
    default_ttl: Option<u32>,
    /// The RDATA being encoded, reused from record to record.
    rdata: Vec<u8>,
}

impl<'s> Reader<'s> {
    /// A reader handing records to `sink`, whose `$INCLUDE`s may read under `include_roots`.
    fn new(sink: &'s mut dyn Sink, include_roots: Vec<PathBuf>) -> Reader<'s> {
        Reader {
            sink,
            errors: Vec::new(),
            suppressed: 0,
            first_suppressed: None,
            include_roots,
            reading: Vec::new(),
            sources: Vec::new(),
            budget: MAX_ZONE_BYTES,
            last_owner: None,
            last_ttl: None,
            default_ttl: None,
            rdata: Vec::new(),
        }
    }

    fn error(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.suppressed += 1;
            self.first_suppressed
                .get_or_insert_with(|| (file.to_owned(), line));
            return;
        }
        self.errors.push(ZoneError::Syntax {
            file: file.to_owned(),
            line,
            message: message.into(),
        });
    }

    /// Reads the zone's own file (`from` is `None`) or an `$INCLUDE`d one, already confined.
    fn file(&mut self, path: &Path, origin: Name, depth: usize, from: Option<(&Path, usize)>) {
        match open_bounded(path, self.budget, from.is_some()) {
            Ok((file, stamp)) => {
                let index = self.sources.len() as u32;
                self.sources.push(Source {
                    path: path.to_owned(),
                    stamp,
                });
                // `$INCLUDE` targets are resolved already; the zone's own file may not be.
                let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
                self.reading.push(real);
                let input = io::BufReader::with_capacity(64 << 10, file);
                let mut lines = Lines::new(input, self.budget);
                self.lines(&mut lines, path, index, origin, depth);
                self.budget = self.budget.saturating_sub(lines.read);
                self.reading.pop();
            }
            Err(e) => match from {
                Some((file, line)) => self.error(
                    file,
                    line,
                    format!(
                        "$INCLUDE {}: {e}",
                        excerpt(&path.display().to_string(), EXCERPT_LONG)
                    ),
                ),
                None => self.errors.push(ZoneError::Read {
                    file: path.to_owned(),
                    source: match e {
                        Refused::Io(e) => e,
                        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
                    },
                }),
            },
        }
    }

    /// Where `$INCLUDE target` (as written in `path`) really is, if it is under an allowed
    /// directory; else why not. Relative names are relative to the including file's directory.
    fn confine(&self, target: &str, path: &Path) -> Result<PathBuf, String> {
        let joined = path.parent().unwrap_or(Path::new(".")).join(target);
        let real = std::fs::canonicalize(&joined).map_err(|e| e.to_string())?;
        if self.include_roots.iter().any(|root| real.starts_with(root)) {
            Ok(real)
        } else {
            Err(
                "outside the config file's directory and [server] include_dirs; \
                 lbns includes only files from there"
                    .to_owned(),
            )
        }
    }

    fn lines(&mut self, lines: &mut Lines, path: &Path, file: u32, mut origin: Name, depth: usize) {
        let mut lexer = Lexer::default();
        let mut origin_wire = Vec::new();
        super::store::wire(&origin, &mut origin_wire);
        let mut n = 0;
        loop {
            n += 1;
            let bytes = match lines.next_line() {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(LineError::TooLong) => {
                    self.error(
                        path,
                        n,
                        format!("line longer than {} KiB", MAX_LINE_BYTES >> 10),
                    );
                    return;
                }
                Err(LineError::TooLarge) => {
                    self.error(
                        path,
                        n,
                        format!(
                            "{}",
                            Refused::TooLarge {
                                size: lines.read,
                                budget: lines.budget
                            }
                        ),
                    );
                    return;
                }
                Err(LineError::Io(e)) => {
                    self.error(path, n, format!("cannot read: {e}"));
                    return;
                }
            };
            let Ok(text) = std::str::from_utf8(bytes) else {
                self.error(path, n, "not UTF-8 text");
                return;
            };
            match lexer.feed(text, n) {
                Ok(false) => {}
                Ok(true) => {
                    let line = lexer.line.unwrap_or(n);
                    let tokens = lexer.tokens();
                    let first = &tokens[0];
                    if !lexer.blank_owner && !first.quoted && first.text.starts_with('$') {
                        let tokens = tokens.to_vec();
                        self.directive(&tokens, line, path, &mut origin, depth);
                        origin_wire.clear();
                        super::store::wire(&origin, &mut origin_wire);
                    } else {
                        let origin = Origin {
                            name: &origin,
                            wire: &origin_wire,
                        };
                        self.record(tokens, lexer.blank_owner, line, path, file, origin);
                    }
                    lexer.clear();
                }
                Err((line, message)) => {
                    self.error(path, line, message);
                    return;
                }
            }
        }
        if let Err((line, message)) = lexer.end() {
            self.error(path, line, message);
        }
    }

    fn directive(
        &mut self,
        tokens: &[Token],
        line: usize,
        path: &Path,
        origin: &mut Name,
        depth: usize,
    ) {
        let args = &tokens[1..];
        match tokens[0].text.to_ascii_uppercase().as_str() {
            "$ORIGIN" => match args {
                [name] => match parse_name(&name.text, origin) {
                    Ok(n) => *origin = n,
                    Err(e) => self.error(path, line, format!("$ORIGIN: {}", said(e))),
                },
                _ => self.error(path, line, "$ORIGIN takes exactly one domain name"),
            },
            "$TTL" => match args {
                [ttl] => match parse_ttl(&ttl.text) {
                    Ok(t) => self.default_ttl = Some(t),
                    Err(e) => self.error(
                        path,
                        line,
                        format!("$TTL `{}`: {}", quote(&ttl.text), said(e)),
                    ),
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
                            self.error(path, line, format!("$INCLUDE origin: {}", said(e)));
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
                let target = match self.confine(&file.text, path) {
                    Ok(t) if self.reading.contains(&t) => {
                        let shown = excerpt(&file.text, EXCERPT_LONG);
                        self.error(
                            path,
                            line,
                            format!("$INCLUDE {shown}: a loop, it is being read"),
                        );
                        return;
                    }
                    Ok(t) => t,
                    Err(why) => {
                        let shown = excerpt(&file.text, EXCERPT_LONG);
                        self.error(path, line, format!("$INCLUDE {shown}: {why}"));
                        return;
                    }
                };
                // RFC 1035 §5.1: an $INCLUDE never changes the origin or owner of the parent.
                let saved_owner = self.last_owner.clone();
                self.file(&target, include_origin, depth + 1, Some((path, line)));
                self.last_owner = saved_owner;
            }
            other => self.error(
                path,
                line,
                format!(
                    "unknown directive `{}` (supported: $ORIGIN, $TTL, $INCLUDE)",
                    quote(other)
                ),
            ),
        }
    }

    fn record(
        &mut self,
        tokens: &[Token],
        blank_owner: bool,
        line: usize,
        path: &Path,
        file: u32,
        origin: Origin<'_>,
    ) {
        let mut tokens = tokens.iter().peekable();

        let mut owner = self.last_owner.take().unwrap_or_default();
        if blank_owner {
            if owner.is_empty() {
                self.error(path, line, "record has no owner and none came before it");
                return;
            }
        } else {
            let t = tokens.next().expect("entries are never empty");
            owner.clear();
            if let Err(e) = name_wire(&t.text, origin, &mut owner) {
                self.error(
                    path,
                    line,
                    format!("owner `{}`: {}", quote(&t.text), said(e)),
                );
                return;
            }
        }
        self.last_owner = Some(owner);

        // [<TTL>] [<class>] <type> or [<class>] [<TTL>] <type> (RFC 1035 §5.1).
        let mut ttl = None;
        let mut class = None;
        let rtype = loop {
            let Some(t) = tokens.next() else {
                self.error(path, line, "record has no type");
                return;
            };
            if ttl.is_none() && t.text.starts_with(|c: char| c.is_ascii_digit()) {
                match parse_ttl(&t.text) {
                    Ok(v) => {
                        ttl = Some(v);
                        continue;
                    }
                    Err(e) => {
                        self.error(path, line, format!("TTL `{}`: {}", quote(&t.text), said(e)));
                        return;
                    }
                }
            }
            if let Some(rt) = common_type(&t.text) {
                break rt;
            }
            let upper = t.text.to_ascii_uppercase();
            if class.is_none()
                && let Ok(c) = DNSClass::from_str(&upper)
            {
                class = Some(c);
                continue;
            }
            match RecordType::from_str(&upper) {
                Ok(rt) => break rt,
                Err(_) => {
                    self.error(
                        path,
                        line,
                        format!("unknown record type `{}`", quote(&t.text)),
                    );
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

        let rest: Vec<&Token> = tokens.collect();
        self.rdata.clear();
        match rdata_wire(rtype, &rest, origin, &mut self.rdata) {
            Ok(()) => {
                let owner = self.last_owner.as_deref().unwrap_or_default();
                self.sink.record(owner, rtype, ttl, &self.rdata, file, line);
            }
            Err(e) => {
                let text: Vec<String> = rest.iter().map(|t| t.presentation()).collect();
                self.error(
                    path,
                    line,
                    format!("{rtype} data `{}`: {}", quote(&text.join(" ")), said(e)),
                );
            }
        }
    }
}

/// The types most zones are made of, recognised without allocating (the general path
/// uppercases the token and asks hickory).
fn common_type(text: &str) -> Option<RecordType> {
    let t = text.as_bytes();
    let is = |s: &str| t.eq_ignore_ascii_case(s.as_bytes());
    Some(match t.len() {
        1 if is("A") => RecordType::A,
        2 if is("NS") => RecordType::NS,
        2 if is("MX") => RecordType::MX,
        3 if is("TXT") => RecordType::TXT,
        3 if is("PTR") => RecordType::PTR,
        3 if is("SRV") => RecordType::SRV,
        3 if is("SOA") => RecordType::SOA,
        4 if is("AAAA") => RecordType::AAAA,
        5 if is("CNAME") => RecordType::CNAME,
        _ => return None,
    })
}

/// The origin in force, as a name and in wire format.
#[derive(Clone, Copy)]
struct Origin<'a> {
    name: &'a Name,
    wire: &'a [u8],
}

/// Writes `text`, an owner or a name in RDATA, in wire format into `out`: `@` is the origin, a
/// name without a final dot is relative to it. Names of plain labels (letters, digits, `-`,
/// or `*`) are converted here, lowercased as hickory's IDNA mapping (UTS #46) does with ASCII
/// letters; any other name (escapes, `_` labels, IDNs, errors) goes through hickory.
fn name_wire(text: &str, origin: Origin<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    if text == "@" {
        out.extend_from_slice(origin.wire);
        return Ok(());
    }
    let start = out.len();
    let (body, absolute) = match text.strip_suffix('.') {
        Some(body) => (body, true),
        None => (text, false),
    };
    let plain = |label: &str| {
        label == "*"
            || (!label.is_empty()
                && label.len() <= 63
                && !label
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    if !body.is_empty() && body.split('.').all(plain) {
        for label in body.split('.') {
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
        if absolute {
            out.push(0);
        } else {
            out.extend_from_slice(origin.wire);
        }
        if out.len() - start <= 255 {
            return Ok(());
        }
        out.truncate(start);
    }
    let name = parse_name(text, origin.name)?;
    super::store::wire(&name, out);
    Ok(())
}

/// An owner or origin: `@` is the origin, a name without a final dot is relative to it.
fn parse_name(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    Name::parse(text, Some(origin)).map_err(|e| e.to_string())
}

/// Writes the RDATA of `rtype` given as `tokens` into `out`, in uncompressed wire format
/// (RFC 1035 §3.3). Addresses and the single-name types are parsed here, the way hickory
/// parses them; every other type goes through hickory's master-file parser.
fn rdata_wire(
    rtype: RecordType,
    tokens: &[&Token],
    origin: Origin<'_>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    fn single<'t>(tokens: &[&'t Token]) -> Result<&'t str, String> {
        match tokens {
            [t] if !t.quoted => Ok(t.text.as_str()),
            [] => Err("record data is missing".to_owned()),
            _ => Err("expected one value".to_owned()),
        }
    }
    match rtype {
        RecordType::A => {
            let a = std::net::Ipv4Addr::from_str(single(tokens)?).map_err(|e| e.to_string())?;
            out.extend_from_slice(&a.octets());
        }
        RecordType::AAAA => {
            let a = std::net::Ipv6Addr::from_str(single(tokens)?).map_err(|e| e.to_string())?;
            out.extend_from_slice(&a.octets());
        }
        RecordType::NS | RecordType::CNAME | RecordType::PTR => {
            name_wire(single(tokens)?, origin, out)?;
        }
        _ => {
            let text: Vec<String> = tokens.iter().map(|t| t.presentation()).collect();
            let rdata = parse_rdata(rtype, &text, origin.name)?;
            let mut encoder = BinEncoder::new(out);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            rdata.emit(&mut encoder).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
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

/// A record read from a master file, with where it came from (the tests' view of a read).
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct SourcedRecord {
    pub(crate) record: hickory_proto::rr::Record,
    /// Index into the sources [`read_zone_file`] returns.
    pub(crate) file: u32,
    pub(crate) line: usize,
}

/// A [`Sink`] that keeps every record, decoded.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Collect(pub(crate) Vec<SourcedRecord>);

#[cfg(test)]
impl Sink for Collect {
    fn record(
        &mut self,
        owner: &[u8],
        rtype: RecordType,
        ttl: u32,
        rdata: &[u8],
        file: u32,
        line: usize,
    ) {
        let data = super::store::decode(rtype, rdata).expect("RDATA encoded at read decodes");
        let owner = super::store::name_from_wire(owner);
        let mut record = hickory_proto::rr::Record::from_rdata(owner, ttl, data);
        record.dns_class = DNSClass::IN;
        self.0.push(SourcedRecord { record, file, line });
    }
}

/// Parses master-file text (for tests).
#[cfg(test)]
fn read_zone_text(
    text: &str,
    path: &Path,
    origin: &Name,
) -> Result<Vec<SourcedRecord>, Vec<ZoneError>> {
    let mut sink = Collect::default();
    let mut reader = Reader::new(&mut sink, Vec::new());
    let mut lines = Lines::new(io::Cursor::new(text.as_bytes().to_vec()), MAX_ZONE_BYTES);
    reader.lines(&mut lines, path, 0, origin.clone(), 0);
    let errors = reader.errors;
    if errors.is_empty() {
        Ok(sink.0)
    } else {
        Err(errors)
    }
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
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("www", 32), "www");
        assert_eq!(excerpt("a b\tc\u{7}é", 32), "a b\\009c\\007\\195\\169");
        assert_eq!(
            excerpt(&"x".repeat(40), 32),
            format!("{}...", "x".repeat(32))
        );
        // A long bad token is quoted short in the error, never whole.
        let err = read(&format!("$TTL 60\n{} A 127.0.0.1\n", "y".repeat(300))).unwrap_err();
        assert!(
            err.contains(&format!("owner `{}...`", "y".repeat(32))),
            "{err}"
        );
        assert!(!err.contains(&"y".repeat(33)), "{err}");
    }

    #[test]
    fn problems_past_a_hundred_are_counted_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.zone");
        std::fs::write(&path, "$TTL 60\n".to_owned() + &"a BOGUS x\n".repeat(250)).unwrap();
        let (errors, _) = read_zone_file(&path, &origin(), &[], &mut Collect::default());
        assert_eq!(errors.len(), MAX_ERRORS + 1);
        assert!(
            errors[MAX_ERRORS]
                .to_string()
                .ends_with("z.zone:102: 150 more problems from here on, not shown"),
            "{}",
            errors[MAX_ERRORS]
        );
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
        let mut recs = Collect::default();
        let (errors, sources) =
            read_zone_file(&main, &origin(), &[dir.path().to_owned()], &mut recs);
        let recs = recs.0;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(recs[0].record.name.to_ascii(), "x.sub.cluster.example.");
        assert_eq!(recs[1].record.name.to_ascii(), "y.cluster.example.");
        assert!(sources[recs[0].file as usize].path.ends_with("inc.zone"));
        assert!(sources[recs[1].file as usize].path.ends_with("main.zone"));
    }

    /// Found by fuzzing (fuzz/, target `zone_file`): a zone that includes itself twice read
    /// itself 2^16 times before the depth limit stopped it (12 s and 600 MB under the fuzzer).
    /// A file that includes one being read is a loop, reported at once; including the same
    /// file twice side by side is not.
    #[test]
    fn include_loops_are_reported_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("zone.db");
        let crash = "$TTL 60\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 1\nwww A$TTL 60\n\
                     @ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 1\nwww A 999.1.1.1\n\
                     92.0.2.1\n$INCLUDE zone.db sub\n 999.1.1.1\n92.0.2.1\n$INCLUDE zone.db sub\n";
        std::fs::write(&main, crash).unwrap();
        let start = std::time::Instant::now();
        let (errors, _) = read_zone_file(
            &main,
            &origin(),
            &[dir.path().to_owned()],
            &mut Collect::default(),
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        let loops: Vec<String> = errors
            .iter()
            .map(ToString::to_string)
            .filter(|e| e.contains("$INCLUDE zone.db: a loop"))
            .collect();
        assert_eq!(loops.len(), 2, "{errors:?}");
        // One file included twice, at two origins: read twice, no error.
        std::fs::write(dir.path().join("inc.zone"), "x A 127.0.0.9\n").unwrap();
        std::fs::write(
            &main,
            "$TTL 60\n$INCLUDE inc.zone a.cluster.example.\n$INCLUDE inc.zone b.cluster.example.\n",
        )
        .unwrap();
        let mut recs = Collect::default();
        let (errors, _) = read_zone_file(&main, &origin(), &[dir.path().to_owned()], &mut recs);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(recs.0.len(), 2);
    }
}
