//! Where `login` takes the token from: TIDEMARK_TOKEN or `--token`, standard
//! input (`--token-stdin`), or a prompt on a terminal that does not echo it.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};

/// The token to log in with. `given` is `--token` or TIDEMARK_TOKEN.
pub fn resolve(given: Option<String>, from_stdin: bool, user: &str, server: &str) -> Result<String> {
    let token = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the token from standard input (--token-stdin)")?;
        line
    } else if let Some(token) = given {
        token
    } else if std::io::stdin().is_terminal() {
        prompt(&format!("token of {user} on {server}: "))?
    } else {
        bail!(
            "no token: set TIDEMARK_TOKEN, or pass --token-stdin with the token on standard input (a terminal is asked for it)"
        );
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("the token is empty: give the one `tidemark admin add-user {user}` printed");
    }
    Ok(token)
}

/// Asks on stderr and reads a line from the terminal without echoing it.
fn prompt(question: &str) -> Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let line = {
        let _quiet = NoEcho::start();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the token")?;
        line
    };
    // The Enter the user typed was not echoed either.
    eprintln!();
    Ok(line)
}

/// Turns the terminal's echo off on standard input until dropped.
struct NoEcho {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl NoEcho {
    fn start() -> NoEcho {
        #[cfg(unix)]
        {
            // SAFETY: termios is plain data, filled in by tcgetattr before use; both
            // calls only read and write the struct passed and the terminal's settings.
            unsafe {
                let mut settings: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(libc::STDIN_FILENO, &mut settings) != 0 {
                    return NoEcho { saved: None };
                }
                let saved = settings;
                settings.c_lflag &= !libc::ECHO;
                if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &settings) != 0 {
                    return NoEcho { saved: None };
                }
                NoEcho { saved: Some(saved) }
            }
        }
        #[cfg(not(unix))]
        NoEcho {}
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings tcgetattr read.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}
