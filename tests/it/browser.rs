//! The status page as a person sees it: rendered by headless Chromium, screenshotted, and its
//! DOM read back. `LBNS_UPDATE_SCREENSHOT=1` also copies the screenshot to docs/status.png,
//! the reference picture the README shows.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::support::backend::HttpBackend;
use crate::support::*;

/// Two live HTTP backends on 127.0.0.5 and .6, same port, reporting loads; .7 stays dead.
async fn two_backends() -> (HttpBackend, HttpBackend) {
    loop {
        let mut live = HttpBackend::start_same_port(&["127.0.0.5", "127.0.0.6"]).await;
        let port = live[0].addr.port();
        // Nothing may listen on .7's port, or the dead backend would not be dead.
        if tokio::net::TcpListener::bind(("127.0.0.7", port))
            .await
            .is_err()
        {
            continue;
        }
        let (b, a) = (live.pop().unwrap(), live.pop().unwrap());
        a.load.store(42, std::sync::atomic::Ordering::Relaxed);
        b.load.store(187, std::sync::atomic::Ordering::Relaxed);
        return (a, b);
    }
}

/// Runs headless Chromium on `url` with `extra` flags, killed if it takes over a minute.
fn chromium(profile: &Path, extra: &[&str], url: &str) -> Output {
    let chromium = require_tool("chromium");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_renders_in_headless_chromium() {
    require_tool("chromium");
    // Kept alive until the end: api1 and api2 stay up, api3 (nothing on .7) is down.
    let (api1, _api2) = two_backends().await;
    let port = api1.addr.port();
    // The drain tests' www pool, plus a probed pool with loads and a dead backend.
    let config = crate::ops::named_config(&format!(
        r#"
[[pool]]
name = "api.cluster.example."
policy = "least-loaded"
answers = 2
backends = [
    {{ address = "127.0.0.5", name = "api1" }},
    {{ address = "127.0.0.6", name = "api2" }},
    {{ address = "127.0.0.7", name = "api3" }},
]
probe = {{ kind = "http", port = {port}, url = "http://{{address}}:{{port}}/health", load_header = "X-Load" }}
"#
    ));
    let s = TestServer::start(&config, &[("cluster.example.zone", EXAMPLE_ZONE)]).await;
    let (code, _) = control_http(
        &s.control,
        "POST",
        "/drain?pool=www.cluster.example.&backend=web2",
    )
    .await;
    assert_eq!(code, 200);
    for _ in 0..20 {
        ask(s.udp, "www.cluster.example.", RecordType::A);
        ask(s.udp, "api.cluster.example.", RecordType::A);
    }
    ask(s.udp, "nope.cluster.example.", RecordType::A);

    let url = format!("http://{}/", s.status());
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("status.png");
    let (profile, shot_arg) = (
        dir.path().join("profile"),
        format!("--screenshot={}", shot.display()),
    );
    let out = tokio::task::spawn_blocking({
        let (profile, url) = (profile.clone(), url.clone());
        move || chromium(&profile, &[&shot_arg], &url)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 800));
    // A blank or error page compresses to a few KB; the rendered tables and badges do not.
    assert!(
        png.len() > 30_000,
        "suspiciously small screenshot: {} bytes",
        png.len()
    );
    if std::env::var_os("LBNS_UPDATE_SCREENSHOT").is_some() {
        let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status.png");
        std::fs::copy(&shot, &reference).unwrap();
    }

    let out = tokio::task::spawn_blocking(move || chromium(&profile, &["--dump-dom"], &url))
        .await
        .unwrap();
    assert!(out.status.success());
    let dom = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "<title>lbns status</title>",
        "<h2>www.cluster.example.</h2>",
        "<h2>api.cluster.example.</h2>",
        "<b>web2</b>",
        "<b>api3</b>",
        "<span class=\"badge up\">up</span>",
        "<span class=\"badge down\">down</span>",
        "<span class=\"badge drained\">drained</span>",
        "NXDOMAIN <b>1</b>",
        "1.87",
    ] {
        assert!(
            dom.contains(needle),
            "missing {needle} in the rendered DOM:\n{dom}"
        );
    }
    s.stop().await;
}

/// 301 pools of one backend (`p0` to `p299`, then `x.cluster.example.`), one of them with a
/// drained backend.
fn many_pools() -> String {
    let mut config = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n\n\
         [[zone]]\norigin = \"cluster.example.\"\nfile = \"cluster.example.zone\"\n",
    );
    for i in 0..300 {
        config.push_str(&format!(
            "\n[[pool]]\nname = \"p{i}.cluster.example.\"\nbackends = [{{ address = \"127.2.{}.{}\", name = \"b{i}\" }}]\n",
            i / 250,
            1 + i % 250
        ));
    }
    config.push_str("\n[[pool]]\nname = \"x.cluster.example.\"\nbackends = [\"127.2.9.9\"]\n");
    config
}

/// The pool names (`<h2>` of each pool section) in a dumped DOM, in order.
fn pool_names(dom: &str) -> Vec<&str> {
    dom.split("<section class=\"pool\">")
        .skip(1)
        .map(|s| {
            let s = &s[s.find("<h2>").expect("a pool heading") + 4..];
            &s[..s.find("</h2>").unwrap()]
        })
        .collect()
}

/// The `href` of the first link with `rel`, HTML entities of a query string undone.
fn link(dom: &str, rel: &str) -> Option<String> {
    let at = dom.find(&format!("rel=\"{rel}\" href=\""))?;
    let rest = &dom[at + rel.len() + 13..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_of_many_pools_pages_and_finds_in_headless_chromium() {
    require_tool("chromium");
    let s = TestServer::start(&many_pools(), &[("cluster.example.zone", EXAMPLE_ZONE)]).await;
    let (code, body) = control_http(
        &s.control,
        "POST",
        "/drain?pool=p123.cluster.example.&backend=b123",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let base = format!("http://{}/", s.status());
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let dom = |path: String| {
        let (profile, url) = (profile.clone(), format!("{base}{path}"));
        async move {
            let out =
                tokio::task::spawn_blocking(move || chromium(&profile, &["--dump-dom"], &url))
                    .await
                    .unwrap();
            assert!(
                out.status.success(),
                "chromium: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };

    // Page 1: 50 pools, the one with a drained backend first, then config order; the cards
    // count all 301.
    let first = dom(String::new()).await;
    let names = pool_names(&first);
    assert_eq!(names.len(), 50, "{first}");
    assert_eq!(names[0], "p123.cluster.example.");
    assert_eq!(names[1], "p0.cluster.example.");
    assert_eq!(names[49], "p48.cluster.example.");
    assert!(first.contains("1–50 of 301 pools"), "{first}");
    assert!(first.contains("<div class=\"n\">301</div>"), "{first}");
    assert!(first.contains("<span>page 1 of 7</span>"), "{first}");
    assert!(link(&first, "prev").is_none());
    // No script on the page: the form and the links are all it takes.
    assert!(!first.contains("<script"), "{first}");
    assert!(
        first.contains("<form class=\"find\" method=\"get\""),
        "{first}"
    );

    // Next: the link the page gives, followed.
    let next = link(&first, "next").expect("a next link");
    assert_eq!(next, "?page=2");
    let second = dom(next).await;
    let names = pool_names(&second);
    assert_eq!(names.len(), 50, "{second}");
    assert_eq!(names[0], "p49.cluster.example.");
    assert_eq!(names[49], "p98.cluster.example.");
    assert!(second.contains("51–100 of 301 pools"), "{second}");
    assert_eq!(link(&second, "prev").as_deref(), Some("?page=1"));

    // The search, as the form sends it: one pool found, the search kept in the form.
    let found = dom("?q=P287.&state=all".to_owned()).await;
    assert_eq!(pool_names(&found), ["p287.cluster.example."], "{found}");
    assert!(found.contains("name=\"q\" value=\"P287.\""), "{found}");
    assert!(found.contains("1–1 of 1 pool matching “P287.”"), "{found}");
    assert!(link(&found, "next").is_none());

    // A search over many pages keeps itself in the next link; a filter finds the drained pool.
    let many = dom("?q=p1&per=10".to_owned()).await;
    assert_eq!(pool_names(&many).len(), 10, "{many}");
    assert_eq!(link(&many, "next").as_deref(), Some("?q=p1&per=10&page=2"));
    let drained = dom("?state=drained".to_owned()).await;
    assert_eq!(pool_names(&drained), ["p123.cluster.example."], "{drained}");
    s.stop().await;
}
