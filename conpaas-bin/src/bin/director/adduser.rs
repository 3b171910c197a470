//! `director adduser` (1.2's cpsadduser.py): what is not given is asked, the password hidden
//! and twice; a name that cannot be had is refused before the password is typed.

use std::process::ExitCode;

use anyhow::Context;
use conpaas_core::config::LoadedConfig;
use conpaas_core::director::{self, accounts};
use conpaas_core::model::Credit;
use conpaas_core::store::Store;

use super::prompt::{prompt, prompt_secret};

/// How many times `adduser` asks for the password twice before giving up.
pub(super) const PASSWORD_ATTEMPTS: usize = 3;

pub(super) fn adduser(
    loaded: &LoadedConfig,
    email: Option<String>,
    username: Option<String>,
    password: Option<String>,
    credit: i64,
) -> anyhow::Result<ExitCode> {
    let email = match email {
        Some(email) => email,
        None => prompt("E-mail: ")?,
    };
    let username = match username {
        Some(username) => username,
        None => prompt("Username: ")?,
    };
    let store = Store::open(&loaded.config.store)?;
    // Before the passwords: a name that cannot be had is said before they are typed.
    match accounts::check_new_user_blocking(&store, &username, &email) {
        Ok(()) => {}
        Err(error) if is_refusal(&error) => {
            eprintln!("E: {error}; nothing changed");
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => return Err(error).context("checking the user name"),
    }
    let password = match password {
        Some(password) => password,
        None => match ask_new_password()? {
            Some(password) => password,
            None => {
                eprintln!(
                    "E: no password after {PASSWORD_ATTEMPTS} attempts (empty, or the two \
                     differed); nothing changed"
                );
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    if password.is_empty() {
        eprintln!("E: the password is empty; nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    let account = accounts::NewAccount::new(username, email, password.into(), Credit(credit))
        .fname(String::new())
        .lname(String::new())
        .affiliation(String::new());
    match accounts::add_user_blocking(&store, account) {
        Ok(user) => {
            println!(
                "user {} created with uid {} and {} credit",
                user.username, user.uid, user.credit
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if is_refusal(&error) => {
            eprintln!("E: {error}; nothing changed");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error).context("adding the user"),
    }
}

/// Whether `adduser` was refused the account (as opposed to failing).
fn is_refusal(error: &director::Error) -> bool {
    matches!(
        error,
        director::Error::UsernameTaken(_)
            | director::Error::EmailTaken(_)
            | director::Error::UsernameReserved(_)
            | director::Error::Invalid { .. }
    )
}

/// The new password, typed twice; asks again (up to [`PASSWORD_ATTEMPTS`] times) when the two
/// differ or it is empty. `None` when no attempt gave one.
pub(super) fn ask_new_password() -> anyhow::Result<Option<String>> {
    for attempt in 1..=PASSWORD_ATTEMPTS {
        let first = prompt_secret("Password: ")?;
        if first.is_empty() {
            eprintln!("the password is empty ({attempt} of {PASSWORD_ATTEMPTS})");
            continue;
        }
        let second = prompt_secret("Repeat password: ")?;
        if first == second {
            return Ok(Some(first));
        }
        eprintln!("the passwords differ ({attempt} of {PASSWORD_ATTEMPTS})");
    }
    Ok(None)
}
