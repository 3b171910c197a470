//! Questions on standard error, answers from standard input (a terminal or a pipe).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

/// Reads one line after showing `question` on stderr; works with piped input too.
pub(super) fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let n_read = std::io::stdin().lock().read_line(&mut line)?;
    if n_read == 0 {
        anyhow::bail!("no answer on standard input");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a secret without echo on a terminal; from a pipe, reads a line.
pub(super) fn prompt_secret(question: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(question)?)
    } else {
        prompt(question)
    }
}
