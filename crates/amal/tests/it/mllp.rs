//! The HL7 v2 MLLP listener over a real TCP socket: every corpus message on
//! one connection gets its ACK (the same as over HTTP) and stores what it
//! says; frames split across writes or several in one write; repeats store
//! nothing; oversized messages are answered AR and the connection closed;
//! silent connections and bytes outside a frame are closed; the account is
//! checked at start; every message is audited.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::hl7::{corpus_dir, corpus_patients, expected, lab_count, msa};

/// A second instance on the same database, with the MLLP listener on as
/// `email`; the listener's address.
async fn listener(
    app: &TestApp,
    email: &str,
    tweak: impl FnOnce(&mut server::RawConfig),
) -> (TestApp, SocketAddr) {
    let mut raw = app.raw.clone();
    raw.hl7_mllp_addr = Some("127.0.0.1:0".into());
    raw.hl7_mllp_user = Some(email.to_string());
    tweak(&mut raw);
    let second = TestApp::spawn_raw(raw).await;
    let addr = server::mllp::start(&second.state)
        .await
        .expect("the listener starts")
        .expect("the listener is on");
    (second, addr)
}

/// A corpus file's message without any MLLP framing of its own.
fn message(file: &str) -> Vec<u8> {
    let mut b = std::fs::read(corpus_dir().join(file)).unwrap();
    if b.first() == Some(&0x0b) {
        b.remove(0);
    }
    while matches!(b.last(), Some(0x1c | b'\r' | b'\n')) {
        b.pop();
    }
    b.push(b'\r');
    b
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0b];
    out.extend_from_slice(msg);
    out.extend_from_slice(&[0x1c, 0x0d]);
    out
}

/// Read one framed ACK (None when the server closed the connection).
async fn read_ack(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = s.read(&mut byte).await.unwrap_or(0);
        if n == 0 {
            assert!(buf.is_empty(), "the connection closed inside an ACK");
            return None;
        }
        buf.push(byte[0]);
        if buf.ends_with(&[0x1c, 0x0d]) {
            assert_eq!(buf[0], 0x0b, "an ACK starts with the start block");
            return Some(String::from_utf8(buf[1..buf.len() - 2].to_vec()).unwrap());
        }
    }
}

#[tokio::test]
async fn mllp_answers_every_corpus_message_like_the_api_and_stores_it_once() {
    let app = TestApp::spawn().await;
    let patients = corpus_patients(&app).await;
    let prov = app.create_user("provider").await;
    let (_second, addr) = listener(&app, &prov.email, |_| {}).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let cases = expected();
    assert!(cases.len() >= 30);
    for (file, code, stored) in &cases {
        let before = lab_count(&app).await;
        s.write_all(&framed(&message(file))).await.unwrap();
        let ack = read_ack(&mut s).await.expect("an ACK");
        assert!(ack.starts_with("MSH|"), "{file}: {ack}");
        assert!(ack.contains("|ACK^R01^ACK|"), "{file}: {ack}");
        assert_eq!(&msa(&ack)[1], code, "{file}: {ack}");
        if code != "AA" {
            assert!(ack.contains("\rERR|"), "{file}: {ack}");
        }
        assert_eq!(lab_count(&app).await - before, *stored, "{file}");
    }

    // A repeat on the same connection stores nothing; the potassium of
    // message 03 is there once.
    let before = lab_count(&app).await;
    s.write_all(&framed(&message("03_critical_potassium.hl7")))
        .await
        .unwrap();
    assert_eq!(msa(&read_ack(&mut s).await.unwrap())[1], "AA");
    assert_eq!(lab_count(&app).await, before);
    let labs = store::labs::list_for_patient(&app.state.db, patients[0], None, None, 1000)
        .await
        .unwrap();
    let k: Vec<_> = labs
        .iter()
        .filter(|l| l.code == "2823-3" && (l.value - 6.8).abs() < 1e-9)
        .collect();
    assert_eq!(k.len(), 1);
    assert_eq!(
        k[0].flag.map(domain::labs::LabFlag::as_str),
        Some("critical_high")
    );

    // Every message was audited as an import by the listener's account.
    let imports: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "hl7.import" && e.actor_id == Some(prov.id))
        .collect();
    assert_eq!(imports.len(), cases.len() + 1);
    assert!(imports.iter().any(|e| e.outcome == "duplicate"));
    assert!(imports.iter().any(|e| e.outcome == "error"));
}

#[tokio::test]
async fn mllp_reads_split_and_batched_frames_and_bounds_what_it_reads() {
    let app = TestApp::spawn().await;
    corpus_patients(&app).await;
    let prov = app.create_user("provider").await;
    let (_second, addr) = listener(&app, &prov.email, |raw| {
        raw.hl7_mllp_max_bytes = Some("2048".into());
        raw.hl7_mllp_idle_timeout = Some("300ms".into());
    })
    .await;

    // One frame in three writes, then two frames in one write.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let one = framed(&message("01_normal_glucose.hl7"));
    for part in [&one[..1], &one[1..20], &one[20..]] {
        s.write_all(part).await.unwrap();
        s.flush().await.unwrap();
    }
    assert_eq!(msa(&read_ack(&mut s).await.unwrap())[1], "AA");
    let mut two = framed(&message("02_high_glucose_v23.hl7"));
    two.extend_from_slice(b"\r\n");
    two.extend(framed(&message("21_unknown_mrn.hl7")));
    s.write_all(&two).await.unwrap();
    let a = read_ack(&mut s).await.unwrap();
    let b = read_ack(&mut s).await.unwrap();
    assert_eq!((msa(&a)[1].as_str(), msa(&a)[2].as_str()), ("AA", "C02"));
    assert_eq!(msa(&b)[1], "AE");

    // Longer than the limit: AR, audited, and the connection is closed.
    let before = lab_count(&app).await;
    let mut big = message("05_cmp_eight_results.hl7");
    while big.len() < 3000 {
        big.extend_from_slice(b"NTE|1||padding padding padding padding padding\r");
    }
    s.write_all(&framed(&big)).await.unwrap();
    let ack = read_ack(&mut s).await.unwrap();
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    assert!(ack.contains("longer than 2048 bytes"), "{ack}");
    assert_eq!(
        read_ack(&mut s).await,
        None,
        "closed after an oversized message"
    );
    assert_eq!(lab_count(&app).await, before, "nothing stored");
    let events = audit_events(&app).await;
    assert!(events.iter().any(|e| e.action == "hl7.import"
        && e.outcome == "error"
        && e.detail.as_deref().is_some_and(|d| d.contains("\"AR\""))));

    // A silent connection is closed after the idle timeout; so is one that
    // speaks something else.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_ack(&mut idle).await, None);
    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_ack(&mut http).await, None);

    // The listener still serves new connections.
    let mut again = TcpStream::connect(addr).await.unwrap();
    again
        .write_all(&framed(&message("03_critical_potassium.hl7")))
        .await
        .unwrap();
    assert_eq!(msa(&read_ack(&mut again).await.unwrap())[1], "AA");
}

#[tokio::test]
async fn mllp_needs_an_account_that_may_import() {
    let app = TestApp::spawn().await;
    let nurse = app.create_user("nurse").await;
    for email in [nurse.email.as_str(), "nobody@clinic.test"] {
        let mut raw = app.raw.clone();
        raw.hl7_mllp_addr = Some("127.0.0.1:0".into());
        raw.hl7_mllp_user = Some(email.to_string());
        let second = TestApp::spawn_raw(raw).await;
        let err = server::mllp::start(&second.state).await.unwrap_err();
        assert!(err.to_string().contains("AMAL_HL7_MLLP_USER"), "{err}");
    }
    // Off unless an address is set; an address needs an account.
    assert_eq!(server::mllp::start(&app.state).await.unwrap(), None);
    let mut raw = app.raw.clone();
    raw.hl7_mllp_addr = Some("127.0.0.1:0".into());
    let problems = server::Config::resolve(raw).unwrap_err();
    assert!(problems.iter().any(|p| p.setting == "AMAL_HL7_MLLP_USER"));
    let mut raw = app.raw.clone();
    raw.hl7_mllp_addr = Some("not an address".into());
    raw.hl7_mllp_user = Some(nurse.email.clone());
    raw.hl7_mllp_idle_timeout = Some("5".into());
    let problems = server::Config::resolve(raw).unwrap_err();
    let names: Vec<_> = problems.iter().map(|p| p.setting).collect();
    assert!(names.contains(&"AMAL_HL7_MLLP_ADDR"), "{names:?}");
    assert!(names.contains(&"AMAL_HL7_MLLP_IDLE_TIMEOUT"), "{names:?}");
}
