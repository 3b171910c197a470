//! The certificate authority without files: a CA generated in memory (or loaded from PEM held
//! by a secret store), a user's certificate, an agent's CSR signed for a manager, and the
//! ConPaaS identity read back. Run with `cargo run -p conpaas-core --example ca_in_memory`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use conpaas_core::ca::{CertIdentity, CertificateAuthority, KeyAlgorithm};
use conpaas_core::model::{Role, ServiceId, UserId};
use secrecy::ExposeSecret as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What an orchestrator keeps in a Kubernetes Secret or Vault: the CA's two PEM texts.
    let made = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?;
    let (cert_pem, key_pem) = (made.cert_pem().to_owned(), made.key_pem());
    assert!(made.cert_dir().is_none());

    // Later, or in another replica: the same CA from those texts.
    let ca = CertificateAuthority::from_pem(
        &cert_pem,
        key_pem.expose_secret(),
        KeyAlgorithm::EcdsaP256,
    )?;
    assert_eq!(ca.cert_der(), made.cert_der());
    println!(
        "CA loaded from memory, valid until {}",
        ca.not_after().format("%Y")
    );

    let user = ca.issue_user_cert(UserId(7), "alice", "alice@example.org")?;
    let identity = CertIdentity::parse(&user.cert_der)?;
    println!(
        "user certificate: CN={} uid={:?} role={:?} serial of {} hex digits",
        identity.cn.as_deref().unwrap_or("?"),
        identity.user_id().map(|uid| uid.0),
        identity.role().map(Role::as_str),
        user.serial.len()
    );
    assert_eq!(identity.user_id(), Some(UserId(7)));
    assert!(identity.has_role(Role::User));
    assert!(user.key_pem.is_some());

    let manager = ca.issue_manager_cert(UserId(7), ServiceId(3))?;
    let identity = CertIdentity::parse(&manager.cert_der)?;
    println!(
        "manager certificate: uid={:?} service={:?} role={:?}",
        identity.user_id().map(|uid| uid.0),
        identity.service_id().map(|sid| sid.0),
        identity.role().map(Role::as_str)
    );
    assert_eq!(identity.service_id(), Some(ServiceId(3)));
    assert!(identity.has_role(Role::Manager));

    // An agent VM's CSR, whatever subject it asks for, is signed with its manager's identity.
    let agent_key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(vec!["agent".to_owned()])?
        .serialize_request(&agent_key)?
        .pem()?;
    let agent = ca.sign_agent_csr(csr.as_bytes(), UserId(7), ServiceId(3))?;
    let identity = CertIdentity::parse(&agent.cert_der)?;
    println!(
        "agent certificate: uid={:?} service={:?} role={:?}",
        identity.user_id().map(|uid| uid.0),
        identity.service_id().map(|sid| sid.0),
        identity.role().map(Role::as_str)
    );
    assert!(identity.has_role(Role::Agent));
    assert!(agent.key_pem.is_none());

    // Files are for CERT_DIR installations only.
    assert!(matches!(
        ca.write_director_cert("director.example.org", conpaas_core::ca::IfExists::Fail),
        Err(conpaas_core::ca::Error::InMemory)
    ));
    println!("an in-memory CA writes no files");
    Ok(())
}
