//! The chat page (`examples/web`) in a real browser: headless Chromium driven through
//! chromedriver. Without them (Debian: `apt-get install chromium chromium-driver`) the test
//! says it skipped, unless `TALKSTORE_REQUIRE_BROWSER=1` (set by CI) makes that a failure.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};

/// A child process killed when dropped, so that a failing test leaves none behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example's binary, built by `cargo test` beside this test's own.
fn page_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    debug.join("examples").join("web")
}

/// Starts the page on `listen` with its data in `db`; returns it with its address.
fn start_page(listen: &str, db: &Path) -> (Killed, SocketAddr) {
    let mut child = Command::new(page_binary())
        .args(["--listen", listen, "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the web example is built (cargo test builds examples)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the page prints its URL").unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.trim_end_matches('/').parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), addr)
}

/// Where `program` is on the `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// chromedriver on a free port and the Chromium it drives, or `None` (having said why) if
/// either is missing.
fn start_driver() -> Option<(Killed, u16, PathBuf)> {
    let (driver, chromium) = (on_path("chromedriver"), on_path("chromium"));
    let missing = [("chromedriver", &driver), ("chromium", &chromium)]
        .into_iter()
        .find_map(|(program, path)| path.is_none().then_some(program));
    if let Some(program) = missing {
        if std::env::var_os("TALKSTORE_REQUIRE_BROWSER").is_some() {
            panic!("{program} is not installed (apt-get install chromium chromium-driver)");
        }
        eprintln!(
            "SKIPPED the chat page's browser test: {program} is not installed \
             (apt-get install chromium chromium-driver; TALKSTORE_REQUIRE_BROWSER=1 to fail instead)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver?)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some((Killed(child), port, chromium?))
}

/// A headless browser session of `chromium`.
async fn browser(driver: u16, chromium: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // chromedriver takes a moment to listen.
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{driver}"))
            .await
        {
            Ok(client) => return client,
            Err(error) if Instant::now() > deadline => panic!("no browser session: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits (at most 20 s) until the JavaScript expression `condition` holds on the page.
async fn until(client: &Client, condition: &str, what: &str) {
    let script = format!("return !!({condition});");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(serde_json::Value::Bool(true)) = client.execute(&script, Vec::new()).await {
            return;
        }
        if Instant::now() > deadline {
            let body = client
                .execute("return document.body.innerText", Vec::new())
                .await
                .unwrap_or_default();
            panic!("waited 20 s for {what} ({condition}); the page shows: {body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types `text` into the element `css` and clicks `button`.
async fn enter(client: &Client, css: &str, text: &str, button: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.send_keys(text).await.unwrap();
    // Every keystroke goes to the server; the click must come after the last.
    let typed = format!("document.querySelector({css:?}).value === {text:?}");
    until(client, &typed, "the text typed").await;
    click(client, button).await;
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Saves what `client` shows as `name`.png in the test target's temporary directory
/// (`target/tmp/web`), for a person to look at.
async fn screenshot(client: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A conversation row of the list, by conversation id.
fn row(id: &str) -> String {
    format!("li.conversation[data-id={id:?}]")
}

/// Alice and Bob on the page: formatted messages, live messages and renames across pages,
/// unread badges cleared by opening, older messages on demand, a new conversation, and a page
/// that recovers by itself after the server restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_can_chat_on_the_page() {
    // The page runs its own engine: the passes on other backends have nothing to add.
    if std::env::var_os("TALKSTORE_TEST_BACKEND").is_some()
        || std::env::var_os("TALKSTORE_TEST_STORAGE").is_some()
    {
        return;
    }
    let Some((_driver, port, chromium)) = start_driver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("web.sqlite");
    let (page, addr) = start_page("127.0.0.1:0", &db);
    let alice = browser(port, &chromium).await;
    let bob = browser(port, &chromium).await;
    alice.goto(&format!("http://{addr}/")).await.unwrap();
    click(&alice, "a[href='/chat/alice']").await;
    until(
        &alice,
        "document.querySelector('#me')?.innerText === 'Alice'",
        "Alice signed in",
    )
    .await;

    // The seeded conversation, its markup rendered.
    click(&alice, &row("welcome")).await;
    until(
        &alice,
        "document.querySelector('#messages strong')?.innerText === 'bold'",
        "bold text",
    )
    .await;
    until(
        &alice,
        "document.querySelector('#messages a[href=\"https://example.com\"]')",
        "a link",
    )
    .await;
    enter(&alice, "#draft", "hello _everyone_", "#send").await;
    until(
        &alice,
        "[...document.querySelectorAll('#messages em')].some(e => e.innerText === 'everyone')",
        "Alice's message",
    )
    .await;

    // Bob sees it live, with an unread badge until he opens the conversation.
    bob.goto(&format!("http://{addr}/chat/bob")).await.unwrap();
    let badge = format!(
        "document.querySelector('{} .badge')",
        row("welcome").replace('"', "\\\"")
    );
    until(
        &bob,
        &format!("{badge}?.innerText === '2'"),
        "Bob's unread badge",
    )
    .await;
    screenshot(&bob, "1-bob-unread").await;
    click(&bob, &row("welcome")).await;
    until(&bob, &format!("!{badge}"), "the badge gone once Bob reads").await;

    // Bob's rename reaches Alice's open conversation, and his message her page.
    enter(&bob, "#rename", "Robert", "#rename-button").await;
    enter(&bob, "#draft", "hi from `bob`", "#send").await;
    until(
        &alice,
        "[...document.querySelectorAll('.message .sender')].some(e => e.innerText === 'Robert')",
        "Robert's message on Alice's page",
    )
    .await;
    until(
        &alice,
        "[...document.querySelectorAll('#messages code')].some(e => e.innerText === 'bob')",
        "code formatting",
    )
    .await;
    // Reactions: Bob's 👍 on Alice's message shows on her page; hers makes it 2, marked hers.
    let alices =
        "[...document.querySelectorAll('.message')].find(m => m.innerText.includes('everyone'))";
    let js = |code: String| code.replace("ALICES", alices);
    until(
        &bob,
        &js("ALICES?.querySelector('button.react[data-emoji=\"👍\"]')".into()),
        "the 👍 button",
    )
    .await;
    bob.execute(
        &js("ALICES.querySelector('button.react[data-emoji=\"👍\"]').click()".into()),
        vec![],
    )
    .await
    .unwrap();
    let count = |n: u32, mine: bool| {
        let class = if mine { ".mine" } else { ":not(.mine)" };
        js(format!(
            "ALICES?.querySelector('button.reaction{class}[data-emoji=\"👍\"]')?.innerText === '👍 {n}'"
        ))
    };
    until(&alice, &count(1, false), "Bob's reaction on Alice's page").await;
    alice
        .execute(
            &js("ALICES.querySelector('button.reaction[data-emoji=\"👍\"]').click()".into()),
            vec![],
        )
        .await
        .unwrap();
    until(&alice, &count(2, true), "Alice's own reaction, marked hers").await;
    until(&bob, &count(2, true), "both reactions on Bob's page").await;
    screenshot(&alice, "2-alice-conversation").await;

    // A new conversation with someone who never signed in.
    enter(&alice, "#other", "dave", "#start").await;
    until(
        &alice,
        "document.querySelector('#title')?.innerText === 'alice & dave'",
        "the new conversation",
    )
    .await;

    // Older messages load on demand: with 34 messages, a conversation opens on its newest 30.
    for i in 0..31 {
        enter(&bob, "#draft", &format!("m{i}"), "#send").await;
        let sent = format!(
            "document.querySelector('#draft').value === '' && document.body.innerText.includes('m{i}')"
        );
        until(&bob, &sent, "a message sent").await;
    }
    click(&alice, &row("welcome")).await;
    until(
        &alice,
        "document.querySelectorAll('#messages .message').length === 30",
        "a first page of 30",
    )
    .await;
    screenshot(&alice, "3-alice-before-older").await;
    click(&alice, "#older").await;
    until(&alice, "document.querySelectorAll('#messages .message').length === 34 && !document.querySelector('#older')", "every message loaded").await;

    // The server restarts; the page notices, waits, reloads and shows the data again.
    drop(page);
    until(
        &alice,
        "document.body.dataset.live === 'no'",
        "the page offline",
    )
    .await;
    screenshot(&alice, "4-alice-offline").await;
    let (_page, _) = start_page(&addr.to_string(), &db);
    until(&alice, "document.body.dataset.live === 'yes' && document.querySelectorAll('li.conversation').length === 2", "the page back with both conversations").await;

    alice.close().await.unwrap();
    bob.close().await.unwrap();
}
