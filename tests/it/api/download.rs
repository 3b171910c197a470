//! `GET /download/ConPaaS.tar.gz` (spec/director-api.md §3.20): the tarball manager and agent
//! VMs fetch with `wget` at boot, without a client certificate.

use crate::support::TestDirector;
use crate::support::clients::{Call, Curl, Transport};

#[tokio::test]
async fn the_tarball_is_served_to_anyone_and_404_when_absent() {
    let director = TestDirector::start();
    let path = "/download/ConPaaS.tar.gz";

    let reply = director.anonymous().get(path).await;
    reply.expect_not_found();
    assert!(
        reply.text().contains("Not Found"),
        "an HTML 404 page: {}",
        reply.text()
    );

    // A few MiB of bytes that are no text (a gzip header, then everything).
    let mut tarball = vec![0x1f, 0x8b, 0x08, 0x00];
    tarball.extend((0..3 * 1024 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    director.write_tarball(&tarball);

    let reply = director.anonymous().get(path).await;
    reply
        .expect_status(200)
        .expect_content_type("application/x-tar")
        .expect_cors(false);
    assert!(
        reply.body == tarball,
        "the file's bytes ({} bytes back)",
        reply.body.len()
    );
    // Served as a file: no Content-Encoding (wget would otherwise store it decompressed),
    // no Content-Disposition.
    assert!(
        reply.header("content-encoding").is_none(),
        "{:?}",
        reply.headers
    );
    assert!(
        reply.header("content-disposition").is_none(),
        "{:?}",
        reply.headers
    );

    // HEAD: the headers of GET, no body.
    let reply = director.anonymous().head(path).await;
    reply
        .expect_status(200)
        .expect_content_type("application/x-tar")
        .expect_cors(false);
    assert!(reply.body.is_empty());

    // curl as the boot scripts' wget: CA-checked, host name checked, no certificate.
    let reply = Curl { multipart: false }
        .send(
            &director,
            Call {
                method: "GET",
                path,
                fields: &[],
                identity: None,
            },
        )
        .await;
    reply
        .expect_status(200)
        .expect_content_type("application/x-tar");
    assert!(reply.body == tarball);

    // With a certificate (the frontend's) it is the same file.
    let reply = director.client(&director.frontend()).get(path).await;
    reply.expect_status(200);
    assert!(reply.body == tarball);

    // Gone again: 404.
    std::fs::remove_file(director.data_dir().join("ConPaaS.tar.gz")).unwrap();
    director.anonymous().get(path).await.expect_not_found();
}
