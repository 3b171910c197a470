//! Hostile clients (issue 15): guessing bursts against the login throttle, look-alike and
//! unbounded names, per-user caps, certificates unfit for client authentication. Every answer
//! keeps its 1.2 shape: a throttled login is a refused one (`false`), a refused name an error
//! object where the route answers error objects.

use std::time::{Duration, Instant};

use conpaas_core::director::LoginSource;

use crate::support::TestDirector;

/// The throttle's free allowance of failed attempts per network and per account.
const ALLOWANCE: u64 = 20;

/// How many checks past the allowance the backoff (1 s, doubling) can admit within `elapsed`.
fn backoff_slots(elapsed: Duration) -> u64 {
    let (mut slots, mut waited, mut delay) = (0, Duration::ZERO, Duration::from_secs(1));
    while waited + delay <= elapsed {
        waited += delay;
        delay *= 2;
        slots += 1;
    }
    slots
}

/// 300 wrong passwords at once from one address, over TLS: the check and the count are one
/// step taken before hashing, so no more than the allowance of passwords is hashed (1.2 and
/// the first throttle hashed about 105 of such a burst), and every answer is `false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_passwords_hashes_at_most_the_allowance() {
    let director = TestDirector::start();
    director.add_user("target", "right", 5).await;
    let http = director.anonymous();
    let before = director.director().hashing().n_verifications();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for attempt in 0..300 {
        let http = http.clone();
        tasks.spawn(async move {
            let password = format!("guess{attempt}");
            http.post("/login", &[("username", "target"), ("password", &password)])
                .await
        });
    }
    while let Some(reply) = tasks.join_next().await {
        reply.unwrap().expect_false(true);
    }
    let elapsed = started.elapsed();
    let n_hashed = director.director().hashing().n_verifications() - before;
    let bound = ALLOWANCE + backoff_slots(elapsed);
    assert!(
        n_hashed <= bound,
        "{n_hashed} passwords hashed in {elapsed:?}, at most {bound} allowed"
    );
    assert!(
        n_hashed >= ALLOWANCE,
        "the allowance is checked: {n_hashed}"
    );
    // Throttled: even the right password is refused unchecked right now.
    let before = director.director().hashing().n_verifications();
    http.post("/login", &[("username", "target"), ("password", "right")])
        .await
        .expect_false(true);
    assert_eq!(director.director().hashing().n_verifications(), before);
}

/// IPv6 is counted per /64 (a host usually holds a whole one) and IPv4 per address; the
/// account is counted too, whatever the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_one_ipv6_64_share_the_allowance() {
    let director = TestDirector::start();
    director.add_user("v6", "right", 5).await;
    director.add_user("other", "right", 5).await;
    let director = director.director().clone();
    let from = |ip: &str| Some(LoginSource::Address(ip.parse().unwrap()));
    let hashing = director.hashing().clone();
    for i in 0..ALLOWANCE {
        let ip = format!("2001:db8:5:6::{i:x}");
        let user = director
            .login_from("nobody", &format!("guess{i}").into(), from(&ip))
            .await
            .unwrap();
        assert!(user.is_none());
    }
    let before = hashing.n_verifications();
    let refused = director
        .login_from("other", &"right".into(), from("2001:db8:5:6:ffff::1"))
        .await
        .unwrap();
    assert!(refused.is_none(), "same /64: throttled");
    assert_eq!(hashing.n_verifications(), before, "refused unchecked");
    let admitted = director
        .login_from("other", &"right".into(), from("2001:db8:5:7::1"))
        .await
        .unwrap();
    assert_eq!(admitted.unwrap().username, "other", "another /64");
    // The account `nobody` now backs off from any address.
    let refused = director
        .login_from("nobody", &"x".into(), from("192.0.2.200"))
        .await
        .unwrap();
    assert!(refused.is_none());
    assert_eq!(hashing.n_verifications(), before + 1);
}

/// Through the frontend's certificate (one address for every user, so counted per account
/// only), guessing a victim's password backs off exponentially but never locks the victim
/// out: once the short delay has passed, the right password is checked and accepted.
#[tokio::test]
async fn guessing_through_the_frontend_backs_off_but_does_not_lock_the_victim_out() {
    let director = TestDirector::start();
    director.add_user("victim", "right", 5).await;
    let frontend = director.client(&director.frontend());
    let hashing = director.director().hashing().clone();
    let login = |password: &'static str| {
        let frontend = frontend.clone();
        async move {
            frontend
                .post("/login", &[("username", "victim"), ("password", password)])
                .await
        }
    };
    for _ in 0..ALLOWANCE {
        login("guess").await.expect_false(true);
    }
    let before = hashing.n_verifications();
    let attempt = Instant::now();
    login("right").await.expect_false(true);
    assert_eq!(hashing.n_verifications(), before, "in backoff: not checked");
    // After 1 s one guess is checked; the next must wait 2 s.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(attempt.elapsed())).await;
    login("guess").await.expect_false(true);
    let last_guess = Instant::now();
    assert_eq!(hashing.n_verifications(), before + 1);
    login("right").await.expect_false(true);
    assert_eq!(hashing.n_verifications(), before + 1);
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(last_guess.elapsed())).await;
    let reply = login("right").await;
    assert_eq!(reply.bare(true)["username"], "victim");
    // The success cleared the account's failures: the victim is not left in backoff.
    login("typo").await.expect_false(true);
    let reply = login("right").await;
    assert_eq!(reply.bare(true)["username"], "victim");
}

/// The seven fields of `/new_user` for `username` (e-mail made unique per call).
fn registration(username: &str, n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("username", username.to_owned()),
        ("fname", "F".to_owned()),
        ("lname", "L".to_owned()),
        ("email", format!("user{n}@example.org")),
        ("affiliation", "VU".to_owned()),
        ("password", "pw".to_owned()),
        ("credit", "5".to_owned()),
    ]
}

async fn register(http: &crate::support::Http, username: &str, n: usize) -> crate::support::Reply {
    let fields = registration(username, n);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
    http.post("/new_user", &fields).await
}

/// Look-alike user names are taken: case, full-width forms and NFD spellings collide with
/// `alice` and `alíce` (NFKC and case folding), each refused with 1.2's error object.
#[tokio::test]
async fn look_alike_user_names_are_taken() {
    let director = TestDirector::start();
    let frontend = director.client(&director.frontend());
    assert_eq!(
        register(&frontend, "alice", 0).await.bare(true)["username"],
        "alice"
    );
    let nfc = "al\u{ed}ce";
    assert_eq!(
        register(&frontend, nfc, 1).await.bare(true)["username"],
        nfc
    );
    for (n, look_alike) in [
        "Alice",
        "ALICE",
        "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
        "ali\u{301}ce",
        "AL\u{cd}CE",
    ]
    .into_iter()
    .enumerate()
    {
        register(&frontend, look_alike, n + 10)
            .await
            .expect_error(&format!("Username \"{look_alike}\" already taken"), true);
    }
    // The reserved name in any spelling.
    register(&frontend, "\u{ff43}\u{ff41}", 20)
        .await
        .expect_error("Username \"\u{ff43}\u{ff41}\" is reserved", true);
    // A different name still registers (a Cyrillic `а` is another letter, not a spelling).
    assert_eq!(
        register(&frontend, "\u{430}lice", 21).await.bare(true)["username"],
        "\u{430}lice"
    );
}

/// Accounts of a 1.2 database whose names differ only in case keep working under their names
/// as stored: the new comparison refuses new look-alikes only.
#[tokio::test]
async fn existing_look_alike_accounts_keep_working() {
    use diesel::{Connection as _, RunQueryDsl as _};
    let director = TestDirector::start();
    let path = director.data_dir().join("director.db");
    let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    for (name, password) in [("Bob", "upper"), ("bob", "lower")] {
        diesel::sql_query(format!(
            "INSERT INTO user (username, email, password, credit) VALUES ('{name}', '{name}@x.org', '{}', 5)",
            crate::support::md5_hex(password)
        ))
        .execute(&mut conn)
        .unwrap();
    }
    let http = director.anonymous();
    for (name, password) in [("Bob", "upper"), ("bob", "lower")] {
        let reply = http
            .post("/login", &[("username", name), ("password", password)])
            .await;
        assert_eq!(reply.bare(true)["username"], name);
    }
    let frontend = director.client(&director.frontend());
    register(&frontend, "BOB", 0)
        .await
        .expect_error("Username \"BOB\" already taken", true);
}

/// Control characters, invisible format characters and surrounding spaces are refused in user,
/// application and service names, and lengths are bounded, each in its route's 1.2 shape: an
/// error object for `/new_user` and `/createapp`, `false` for the renames. Nothing is stored.
#[tokio::test]
async fn hidden_characters_and_overlong_names_are_refused() {
    let director = TestDirector::start();
    let frontend = director.client(&director.frontend());
    let long_user = "u".repeat(65);
    for (n, bad) in [
        " alice",
        "alice ",
        "ali\u{200b}ce",
        "ali\u{0}ce",
        "ali\u{1b}[31mce",
        "ali\r\nce",
        long_user.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let msg = register(&frontend, bad, n).await.expect_error_object(true);
        assert!(msg.starts_with("username: expected"), "{bad:?}: {msg}");
    }
    let long_text = "x".repeat(257);
    let fields = registration("longfname", 99);
    let mut fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
    fields[1].1 = &long_text;
    let msg = frontend
        .post("/new_user", &fields)
        .await
        .expect_error_object(true);
    assert!(msg.starts_with("fname: expected at most 256"), "{msg}");

    let uid = director.add_user("namer", "pw", 10).await;
    let user = director.user_identity("namer", "pw").await;
    let http = director.client(&user);
    let before = http.post("/listapp", &[]).await.bare(true);
    let long_name = "n".repeat(257);
    for bad in [
        "app\u{0}",
        "\u{1b}]0;title\u{7}",
        "two\r\nlines",
        "zero\u{200b}width",
        "rtl\u{202e}gnp.exe",
        " padded",
        long_name.as_str(),
    ] {
        let msg = http
            .post("/createapp", &[("name", bad)])
            .await
            .expect_error_object(true);
        assert!(msg.starts_with("name: expected"), "{bad:?}: {msg}");
        http.post("/renameapp/1", &[("name", bad)])
            .await
            .expect_false(true);
    }
    assert_eq!(http.post("/listapp", &[]).await.bare(true), before);
    let started = super::manager::start_service(&director, &user, i64::from(uid)).await;
    let sid = started.sid.to_string();
    for bad in ["svc\u{0}", "svc\u{feff}", "svc\n", long_name.as_str()] {
        http.post(&format!("/rename/{sid}"), &[("name", bad)])
            .await
            .expect_false(true);
    }
    http.post(&format!("/rename/{sid}"), &[("name", "fine name")])
        .await
        .expect_true(false);
    // Exactly 256 characters is fine.
    let longest = "n".repeat(256);
    let reply = http.post("/createapp", &[("name", &longest)]).await;
    assert_eq!(reply.jsonify(true)["name"], longest.as_str());
}

/// `[director] MAX_APPLICATIONS_PER_USER` and `MAX_SERVICES_PER_USER` cap what one user
/// may create, also under concurrent requests; the refusal is the route's error object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applications_and_services_per_user_are_capped() {
    use crate::support::Options;
    let director = TestDirector::with(
        Options::new()
            .director_setting("MAX_APPLICATIONS_PER_USER", "5")
            .director_setting("MAX_SERVICES_PER_USER", "3"),
    );
    director.add_user("capped", "pw", 100).await;
    let user = director.user_identity("capped", "pw").await;
    let http = director.client(&user);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let http = http.clone();
        tasks.spawn(async move {
            http.post("/createapp", &[("name", &format!("app{i}"))])
                .await
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(reply) = tasks.join_next().await {
        let value = reply.unwrap().jsonify(true);
        if value.get("aid").is_some() {
            created += 1;
        } else {
            assert_eq!(
                value,
                serde_json::json!({"error": true, "msg": "at most 5 applications per user"})
            );
            refused += 1;
        }
    }
    // `New Application` counts: four more.
    assert_eq!((created, refused), (4, 8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let http = http.clone();
        tasks.spawn(async move { http.post("/start/php", &[]).await });
    }
    let (mut started, mut refused) = (0, 0);
    while let Some(reply) = tasks.join_next().await {
        let value = reply.unwrap().jsonify(true);
        if value.get("sid").is_some() {
            started += 1;
        } else {
            assert_eq!(
                value,
                serde_json::json!({
                    "error": true,
                    "msg": "Error upon service creation: at most 3 services per user"
                })
            );
            refused += 1;
        }
    }
    assert_eq!((started, refused), (3, 3));
}

/// A client certificate signed by the director's CA (as an attacker who got one signed some
/// other way would hold), made by `openssl` with `subject` and the extensions in `ext`.
fn openssl_client_cert(
    director: &TestDirector,
    label: &str,
    subject: &str,
    ext: &str,
) -> crate::support::Identity {
    let dir = director.scratch(label);
    let certs = director.cert_dir();
    // An extension of no consequence, so that the certificate is v3 (rustls refuses v1).
    std::fs::write(
        dir.join("ext.cnf"),
        format!("[ext]\nsubjectKeyIdentifier = hash\n{ext}\n"),
    )
    .unwrap();
    director.openssl(
        &dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "csr.pem",
            "-subj",
            subject,
            "-multivalue-rdn",
        ],
    );
    let ca_cert = certs.join(conpaas_core::ca::CA_CERT_FILE);
    let ca_key = certs.join(conpaas_core::ca::CA_KEY_FILE);
    let args = vec![
        "x509".to_owned(),
        "-req".to_owned(),
        "-in".to_owned(),
        "csr.pem".to_owned(),
        "-CA".to_owned(),
        ca_cert.display().to_string(),
        "-CAkey".to_owned(),
        ca_key.display().to_string(),
        "-set_serial".to_owned(),
        "0x5eed01".to_owned(),
        "-days".to_owned(),
        "30".to_owned(),
        "-sha256".to_owned(),
        "-out".to_owned(),
        "cert.pem".to_owned(),
        "-extfile".to_owned(),
        "ext.cnf".to_owned(),
        "-extensions".to_owned(),
        "ext".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    director.openssl(&dir, &args);
    let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    director.save_identity(label, &cert, &key)
}

/// Only certificates fit for client authentication name a caller: keyUsage, when present,
/// must allow digitalSignature and extendedKeyUsage, when present, clientAuth; a subject with
/// a repeated UID, role or serviceLocator names nobody. Refused ones are anonymous (401 on a
/// user route); the director's own certificates and extension-less ones (as 1.2 issued them)
/// pass (1.2's were v1, which rustls refuses: users fetch new ones, docs/operations.md).
#[tokio::test]
async fn client_certificates_must_be_fit_for_client_authentication() {
    let director = TestDirector::start();
    let uid = director.add_user("certy", "pw", 5).await;
    let user = format!(
        "/1.3.6.1.5.5.7.48.1.7=0/CN=certy/0.9.2342.19200300.100.1.1={uid}/O=Contrail/\
         emailAddress=certy@example.org/2.5.4.72=user"
    );
    let accepted = [
        ("no-extensions", user.clone(), ""),
        (
            "digital-signature",
            user.clone(),
            "keyUsage = critical, digitalSignature, keyEncipherment",
        ),
        (
            "client-auth",
            user.clone(),
            "keyUsage = digitalSignature\nextendedKeyUsage = clientAuth, serverAuth",
        ),
    ];
    let refused = [
        (
            "cert-sign-only",
            user.clone(),
            "keyUsage = critical, keyCertSign, cRLSign",
        ),
        (
            "server-auth-only",
            user.clone(),
            "extendedKeyUsage = serverAuth",
        ),
        (
            "two-uids",
            format!("{user}/0.9.2342.19200300.100.1.1=999"),
            "",
        ),
        ("two-roles", format!("{user}/2.5.4.72=manager"), ""),
        (
            "two-service-locators",
            format!("{user}/1.3.6.1.5.5.7.48.1.7=7"),
            "",
        ),
    ];
    for (label, subject, ext) in accepted {
        let identity = openssl_client_cert(&director, label, &subject, ext);
        let reply = director.client(&identity).post("/listapp", &[]).await;
        assert_eq!(
            reply.bare(true)[0]["name"],
            "New Application",
            "{label} is accepted"
        );
    }
    for (label, subject, ext) in refused {
        let identity = openssl_client_cert(&director, label, &subject, ext);
        let http = director.client(&identity);
        let request = http.inner().post(http.url("/listapp"));
        match http.try_send("POST /listapp".into(), request).await {
            Ok(reply) => {
                reply.expect_status(401);
                assert!(reply.text().starts_with("cert_required: "), "{label}");
            }
            // rustls already refuses an extendedKeyUsage without clientAuth at the handshake.
            Err(error) => assert!(
                label == "server-auth-only" && error.contains("UnsupportedCertificate"),
                "{label}: {error}"
            ),
        }
    }
    // What the director's CA issues still passes.
    let own = director.user_identity("certy", "pw").await;
    let reply = director.client(&own).post("/listapp", &[]).await;
    assert_eq!(reply.bare(true)[0]["name"], "New Application");
    let frontend = director.client(&director.frontend());
    let reply = frontend
        .post("/login", &[("username", "certy"), ("password", "pw")])
        .await;
    assert_eq!(reply.bare(true)["username"], "certy");
}
