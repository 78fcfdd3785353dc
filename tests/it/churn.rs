//! Reconnect churn and crash durability over a real server.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use talkstore::{
    ConversationParams, ParticipantParams, SessionOptions, TalkSession, UserParams,
    get_talk_session,
    server::{AppCredentials, mint_user_token},
};

use futures_util::StreamExt;

use crate::support::{app, proxy::Proxy, server::Running, settle};

fn session(
    app: &str,
    credentials: &AppCredentials,
    addr: std::net::SocketAddr,
    user: &str,
) -> TalkSession {
    let token = mint_user_token(credentials, user, 3600).unwrap();
    let options = SessionOptions::new(app, user)
        .url(format!("ws://{addr}"))
        .token(token);
    get_talk_session(options).unwrap()
}

/// Everything an observer's live window holds, oldest first, after loading it all.
async fn all_messages(observer: &TalkSession, conversation: &str) -> Vec<(String, String)> {
    let window = observer
        .conversation(conversation)
        .unwrap()
        .subscribe_messages(None);
    window.connected().await.unwrap();
    while !window.loaded_all() {
        window.load_more(Some(100)).await.unwrap();
    }
    let mut all: Vec<_> = window
        .latest()
        .unwrap()
        .unwrap()
        .iter()
        .map(|m| (m.id.to_string(), m.plaintext.clone()))
        .collect();
    all.reverse();
    all
}

/// Sessions subscribe and send while a proxy cuts their connections at random; in the end
/// every session's window equals the server's state: nothing missing, duplicated or reordered.
#[tokio::test]
async fn windows_converge_through_reconnect_churn() {
    let running = Running::start(&app()).await;
    let app_id = running.credentials.id.clone();
    let proxy = Proxy::start(running.addr).await;
    let users = ["u0", "u1", "u2", "u3"];
    let sessions: Vec<TalkSession> = users
        .iter()
        .map(|u| session(&app_id, &running.credentials, proxy.addr, u))
        .collect();
    for s in &sessions {
        s.current_user()
            .set(UserParams::new().name(s.current_user().id().as_str()))
            .await
            .unwrap();
    }
    let chat = sessions[0].conversation("churn").unwrap();
    chat.set(ConversationParams::new()).await.unwrap();
    for user in &users[1..] {
        chat.participant(user)
            .unwrap()
            .set(ParticipantParams::new())
            .await
            .unwrap();
    }
    let windows: Vec<_> = sessions
        .iter()
        .map(|s| s.conversation("churn").unwrap().subscribe_messages(None))
        .collect();
    for w in &windows {
        w.connected().await.unwrap();
    }

    let acked = Arc::new(Mutex::new(Vec::new()));
    let cutting = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                tokio::time::sleep(Duration::from_millis(40 + (i * 37) % 160)).await;
                proxy.cut();
            }
        })
    };
    let senders = sessions.iter().enumerate().map(|(n, s)| {
        let acked = acked.clone();
        let chat = s.conversation("churn").unwrap();
        async move {
            for i in 0..15 {
                let m = chat.send(format!("u{n}-{i}")).await.unwrap();
                acked.lock().unwrap().push(m.id().to_string());
            }
        }
    });
    futures_util::future::join_all(senders).await;
    cutting.abort();
    settle(&sessions).await;

    let observer = session(&app_id, &running.credentials, running.addr, "u0-observer");
    observer
        .current_user()
        .set(UserParams::new().name("observer"))
        .await
        .unwrap();
    chat.participant("u0-observer")
        .unwrap()
        .set(ParticipantParams::new())
        .await
        .unwrap();
    let truth = all_messages(&observer, "churn").await;
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(acked.len(), 60, "every send was acknowledged once");
    let ids: Vec<String> = truth.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids.iter().cloned().collect::<HashSet<_>>(),
        acked,
        "nothing missing or extra"
    );
    assert_eq!(ids.len(), 60, "no duplicates");
    for (n, window) in windows.iter().enumerate() {
        let mine: Vec<String> = window
            .latest()
            .unwrap()
            .unwrap()
            .iter()
            .rev()
            .map(|m| m.id.to_string())
            .collect();
        assert_eq!(mine, ids, "session u{n} converged");
    }
    // Each sender's messages are in send order.
    for n in 0..4 {
        let texts: Vec<&String> = truth
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.starts_with(&format!("u{n}-")))
            .collect();
        let expected: Vec<String> = (0..15).map(|i| format!("u{n}-{i}")).collect();
        assert_eq!(texts, expected.iter().collect::<Vec<_>>());
    }
}

/// The number of SIGKILL restarts; `TALKSTORE_CRASH_RUNS=100` for the long run.
fn crash_runs() -> usize {
    std::env::var("TALKSTORE_CRASH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

/// Concurrent senders record every acknowledged message while the server is killed with
/// SIGKILL at random times and restarted: every acknowledged message is there exactly once, in
/// each sender's order, and the database passes `PRAGMA integrity_check`.
/// After a dropped connection a session resumes from the last push it applied: the server
/// sends the records changed meanwhile, not the whole subscription again, and the window ends
/// up equal to the server's.
#[tokio::test]
async fn reconnects_resume_instead_of_resending_everything() {
    let running = Running::start(&app()).await;
    let app_id = running.credentials.id.clone();
    let proxy = Proxy::start(running.addr).await;
    let alice = session(&app_id, &running.credentials, proxy.addr, "alice");
    let bob = session(&app_id, &running.credentials, running.addr, "bob");
    for s in [&alice, &bob] {
        let me = s.current_user();
        me.set(UserParams::new().name(me.id().as_str()))
            .await
            .unwrap();
    }
    let chat = alice.conversation("resume").unwrap();
    chat.set(ConversationParams::new()).await.unwrap();
    chat.participant("bob")
        .unwrap()
        .set(ParticipantParams::new())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            bob.conversation("resume")
                .unwrap()
                .send(format!("message {i}: {}", "x".repeat(200)))
                .await
                .unwrap()
                .id()
                .to_string(),
        );
    }
    let before = proxy.downstream();
    let window = chat.subscribe_messages(None);
    window.connected().await.unwrap();
    let subscribing = proxy.downstream() - before;

    proxy.cut();
    let edited = ids[10].clone();
    bob.conversation("resume")
        .unwrap()
        .message(&edited)
        .unwrap()
        .edit("edited")
        .await
        .unwrap();
    let after_cut = proxy.downstream();
    let mut snapshots = window.stream();
    let converged = async {
        while let Some(snapshot) = snapshots.next().await {
            if snapshot.is_some_and(|s| s.iter().any(|m| m.plaintext == "edited")) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), converged)
        .await
        .expect("the edit arrives");
    let resuming = proxy.downstream() - after_cut;
    assert!(
        resuming * 4 < subscribing,
        "resuming took {resuming} bytes, subscribing {subscribing}"
    );
    let observer = bob.conversation("resume").unwrap().subscribe_messages(None);
    observer.connected().await.unwrap();
    let texts = |s: &talkstore::MessageListSubscription| {
        s.latest()
            .unwrap()
            .unwrap()
            .iter()
            .map(|m| (m.id.to_string(), m.plaintext.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&window), texts(&observer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let app_id = app().replace(['.'], "-");
    let secret = "crash-secret-0123456789";
    let credentials = AppCredentials::new(&app_id, secret);
    let data = crate::support::temp_dir("it-crash").join(&app_id);
    let _ = std::fs::remove_dir_all(&data);
    let (mut child, addr) =
        crate::support::process::ServerProcess::start(&data, &app_id, secret, None);
    let proxy = Proxy::start(addr).await;
    let senders: Vec<TalkSession> = (0..3)
        .map(|n| session(&app_id, &credentials, proxy.addr, &format!("s{n}")))
        .collect();
    for s in &senders {
        s.current_user()
            .set(UserParams::new().name("sender"))
            .await
            .unwrap();
    }
    // The server's default policy: the first sender creates the conversation and invites.
    let crash = senders[0].conversation("crash").unwrap();
    crash.set(ConversationParams::new()).await.unwrap();
    for n in 1..senders.len() {
        let invited = crash.participant(format!("s{n}")).unwrap();
        invited.set(ParticipantParams::new()).await.unwrap();
    }
    let acked = Arc::new(Mutex::new(Vec::<(usize, usize, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let chat = s.conversation("crash").unwrap();
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let m = chat.send(format!("s{n}-{i}")).await.unwrap();
                    acked.lock().unwrap().push((n, i, m.id().to_string()));
                }
            })
        })
        .collect();
    for run in 0..crash_runs() {
        tokio::time::sleep(Duration::from_millis(30 + (run as u64 * 53) % 200)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        proxy.cut();
        let (next, addr) =
            crate::support::process::ServerProcess::start(&data, &app_id, secret, None);
        child = next;
        proxy.retarget(addr);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let observer = session(&app_id, &credentials, proxy.addr, "s0");
    let all = all_messages(&observer, "crash").await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 3 * crash_runs(),
        "senders made progress: {}",
        acked.len()
    );
    let ids: Vec<&String> = all.iter().map(|(id, _)| id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no message stored twice");
    let texts: HashSet<&String> = all.iter().map(|(_, t)| t).collect();
    assert_eq!(texts.len(), all.len(), "no retried send duplicated");
    for (n, i, id) in &acked {
        assert!(
            unique.contains(id),
            "acknowledged message s{n}-{i} ({id}) was lost"
        );
    }
    for n in 0..3 {
        let order: Vec<usize> = all
            .iter()
            .filter_map(|(_, t)| {
                t.strip_prefix(&format!("s{n}-"))
                    .and_then(|i| i.parse().ok())
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "sender s{n} out of order: {order:?}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let db = rusqlite::Connection::open(data.join(format!("{app_id}.sqlite"))).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
