//! The planner's report in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) opens the published page, and over the DevTools protocol the test reads
//! back what was laid out (every chart drawn with marks of non-zero size, every chart followed
//! by its table, no script in the page even where a group's name is markup), what was painted
//! (a screenshot's pixels inside each chart, in the colours it draws with), and the console (no
//! error, no exception, nothing refused to load).
//!
//! The protocol is spoken directly over one WebSocket: the test needs six of its commands, which
//! a DevTools client crate would bring with the whole generated protocol.

use crate::trained;
use carecast_audit::AuditLog;
use carecast_tables::disclosure::Disclosure;
use carecast_tables::population::{PopulationOptions, summarise};
use carecast_training::Algorithm;
use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;

/// Where a group's name is markup, it must reach the page as text.
const MARKUP: &str = "North <script>alert(1)</script>";
const LOCALITIES: [&str; 3] = [MARKUP, "South & \"East\"", "West"];

#[test]
fn the_report_renders_every_chart_in_chromium_with_a_clean_console() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|c| {
        Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    }) else {
        assert!(std::env::var("CI").is_err(), "CI is set but Chromium is not installed: .ci/run installs it");
        eprintln!("SKIPPED: install Chromium (Debian: apt-get install chromium) to test the report in a browser");
        return;
    };
    let (shared, dir, pkg) = trained("report", Algorithm::Logistic);
    std::fs::create_dir_all(&dir).unwrap();

    // SUPPORT with a locality column whose names are markup, quotes and ampersands.
    let text = std::fs::read_to_string(&shared).unwrap();
    let mut lines = text.lines();
    let mut register = format!("{},locality\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        let name = LOCALITIES[i % 3];
        register += &format!("{line},\"{}\"\n", name.replace('"', "\"\""));
    }
    let input = dir.join("register.csv");
    std::fs::write(&input, register).unwrap();
    let options = PopulationOptions {
        by: vec!["locality".parse().unwrap(), "age=65,80".parse().unwrap()],
        outcome: Some("hospdead".into()),
        key_column: Some("sno".into()),
        disclosure: Disclosure::default(),
        scenario: vec!["meanbp>=70".parse().unwrap()],
        audit_rows: false,
    };
    let summary = summarise(&pkg, &input, &options).unwrap();
    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    summary.publish(&dir.join("summary"), &pkg, &audit).unwrap();
    let page = dir.join("summary.html");

    let mut browser = Browser::launch(chromium, &dir.join("profile"));
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );
    browser.call("Page.navigate", json!({ "url": format!("file://{}", page.display()) }));
    browser.wait_for("Page.loadEventFired");
    // The whole page in one viewport, so that the screenshot holds every chart where the layout says.
    let height = browser.evaluate("document.documentElement.scrollHeight").as_f64().unwrap();
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1000, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    let laid_out = browser.evaluate(
        "({
            scripts: document.scripts.length,
            charts: [...document.querySelectorAll('svg.chart')].map(svg => {
                const r = svg.getBoundingClientRect();
                const marks = [...svg.querySelectorAll('.bar, .point, .cell, .interval')]
                    .filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
                const next = svg.closest('figure').nextElementSibling;
                return { id: svg.getAttribute('aria-labelledby'), x: r.x, y: r.y + window.scrollY,
                         width: r.width, height: r.height, marks: marks.length,
                         table: next ? next.tagName : null };
            }),
            rows: [...document.querySelectorAll('tbody th')].map(th => th.textContent),
        })",
    );
    let charts = laid_out["charts"].as_array().unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["distribution", "bands", "expected", "burden", "scenario"]);
    for chart in charts {
        assert!(chart["width"].as_f64().unwrap() > 500.0 && chart["height"].as_f64().unwrap() > 100.0, "{chart}");
        assert!(chart["marks"].as_u64().unwrap() >= 3, "drawn: {chart}");
        assert_eq!(chart["table"], "TABLE", "every chart is followed by its table: {chart}");
    }
    assert_eq!(laid_out["scripts"], 0, "a group named with markup stays text");
    let rows: Vec<&str> = laid_out["rows"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(rows.iter().any(|r| r.starts_with(&format!("{MARKUP} · "))), "{rows:?}");
    assert!(rows.iter().any(|r| r.starts_with("South & \"East\" · ")), "{rows:?}");

    // Painted: inside each chart, a share of its pixels in the colour of its marks.
    let shot = browser.call("Page.captureScreenshot", json!({"format": "png"}));
    let png =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot["data"].as_str().unwrap()).unwrap();
    let image = Image::decode(&png);
    let nhs_blue = [0x00, 0x5e, 0xb8];
    for (chart, colour, least) in [
        (&charts[0], nhs_blue, 0.02),
        (&charts[1], [0x9e, 0xca, 0xe1], 0.02),
        (&charts[2], nhs_blue, 0.001),
        (&charts[4], nhs_blue, 0.02),
    ] {
        let share = image.share(chart, colour);
        assert!(share >= least, "{}: {share:.4} of its pixels in {colour:?}", chart["id"]);
    }
    // The burden chart is shaded red and blue by strength: most of its cells are neither white nor grey.
    assert!(image.share_where(&charts[3], |[r, g, b]| r.abs_diff(g) > 30 || b.abs_diff(g) > 30) > 0.2);

    let complaints = browser.complaints();
    assert!(complaints.is_empty(), "the console: {complaints:#?}");
}

/// Headless Chromium with its DevTools WebSocket, attached to one page.
struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    events: Vec<Value>,
}

impl Browser {
    fn launch(chromium: &str, profile: &Path) -> Self {
        let _ = std::fs::remove_dir_all(profile);
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Chromium writes the port it chose, and the browser's WebSocket path, once it listens.
        let started = Instant::now();
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort"))
                && let Some((port, path)) = text.split_once('\n')
                && !path.trim().is_empty()
            {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "Chromium did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (socket, _) = tungstenite::connect(endpoint).unwrap();
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        let mut browser = Self { child, socket, session: String::new(), next_id: 0, events: Vec::new() };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        browser
    }

    /// Sends a command (to the page once attached) and returns its result, keeping the events
    /// that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket.send(tungstenite::Message::text(message.to_string())).unwrap();
        loop {
            let reply = self.read();
            if reply["id"] == self.next_id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
            self.events.push(reply);
        }
    }

    fn read(&mut self) -> Value {
        loop {
            if let tungstenite::Message::Text(text) = self.socket.read().unwrap() {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    fn wait_for(&mut self, event: &str) {
        while !self.events.iter().any(|e| e["method"] == event) {
            let next = self.read();
            self.events.push(next);
        }
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        assert!(result.get("exceptionDetails").is_none(), "{result}");
        result["result"]["value"].clone()
    }

    /// Console errors and warnings, uncaught exceptions, and the browser's own log errors (a
    /// resource refused or not found).
    fn complaints(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => {
                    matches!(e["params"]["type"].as_str(), Some("error" | "warning" | "assert"))
                }
                Some("Runtime.exceptionThrown") => true,
                Some("Log.entryAdded") => matches!(e["params"]["entry"]["level"].as_str(), Some("error" | "warning")),
                _ => false,
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A screenshot's pixels, as RGB.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn decode(png: &[u8]) -> Self {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buffer).unwrap();
        let channels = frame.color_type.samples();
        assert_eq!(frame.bit_depth, png::BitDepth::Eight);
        let rgb = buffer[..frame.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
        Self { width: frame.width as usize, height: frame.height as usize, rgb }
    }

    /// The share of a chart's pixels that are `colour` (within anti-aliasing's reach).
    fn share(&self, chart: &Value, colour: [u8; 3]) -> f64 {
        self.share_where(chart, |p| p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 8))
    }

    fn share_where(&self, chart: &Value, test: impl Fn([u8; 3]) -> bool) -> f64 {
        let at = |k: &str| chart[k].as_f64().unwrap().max(0.0) as usize;
        let (x0, y0) = (at("x"), at("y"));
        let (x1, y1) = ((x0 + at("width")).min(self.width), (y0 + at("height")).min(self.height));
        assert!(x1 > x0 && y1 > y0, "{chart} lies outside the {}x{} screenshot", self.width, self.height);
        let hits = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| test(self.rgb[y * self.width + x]))
            .count();
        hits as f64 / ((x1 - x0) * (y1 - y0)) as f64
    }
}
