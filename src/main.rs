//! The `mail2sms` command.

use clap::{Parser, Subcommand};
use mail2sms::app;
use mail2sms::config::Config;
use mail2sms::request::Envelope;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Email-to-SMS bridge speaking iSendPro's "mail 2 SMS" protocol.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (embedded defaults when no --config is given).
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Process one message read on standard input, as SMTP would (for an
    /// MTA's pipe transport or a cron job), like sendmail:
    /// `deliver [-f SENDER] [RECIPIENT...]`. Exit codes follow sysexits:
    /// 0 accepted, 65 unreadable request, 77 not allowed, 75 try again later.
    #[command(after_help = DELIVER_EXIT_CODES)]
    Deliver {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The envelope sender (used when the message has no From: header).
        #[arg(long, short = 'f', default_value = "", allow_hyphen_values = true)]
        from: String,
        /// The envelope recipients, as an MTA passes them (Postfix:
        /// `${recipient}`); optional for `<envoi>` mail.
        recipients: Vec<String>,
    },
    /// Validate a configuration file and print a summary (no secrets).
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The SMS providers of a configuration.
    Providers {
        #[command(subcommand)]
        action: ProvidersAction,
    },
    /// Account credit balances (accounts with `credits = true`), in SMS
    /// segments; works while the daemon runs.
    Credits {
        #[command(subcommand)]
        action: CreditsAction,
    },
    /// The opt-out list: numbers that never receive SMS (code 11), for one
    /// account or all; works while the daemon runs.
    Optout {
        #[command(subcommand)]
        action: OptoutAction,
    },
    /// Print the argon2id hash of a password, for `[smtp.users.NAME]
    /// password_hash`. The password is read from the terminal (not echoed)
    /// or, when standard input is not a terminal, as its first line; never
    /// from the command line.
    HashPassword,
}

#[derive(Subcommand)]
enum CreditsAction {
    /// Print an account's balance.
    Show {
        /// The account's name in the config.
        account: String,
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Add segments to an account's balance (negative to take some away).
    Add {
        /// The account's name in the config.
        account: String,
        /// Segments to add.
        #[arg(allow_negative_numbers = true)]
        amount: i64,
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OptoutAction {
    /// Stop sending to a number.
    Add {
        /// The number, national or international.
        number: String,
        /// Only for this account (default: every account).
        #[arg(long, short)]
        account: Option<String>,
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Send to a number again.
    Remove {
        /// The number, national or international.
        number: String,
        /// The account whose list it is on (default: the global list).
        #[arg(long, short)]
        account: Option<String>,
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the list (one account's entries and the global ones with
    /// --account).
    List {
        /// Only what applies to this account.
        #[arg(long, short)]
        account: Option<String>,
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProvidersAction {
    /// Check each provider's credentials and balance, where its API allows,
    /// without sending any SMS. Exit code 0 when all are usable, 69 if not.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded()?,
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Makes glibc's malloc give large blocks back to the system: by default
/// its mmap threshold grows after a large block is freed, so the buffers of
/// one big request (a 100 000-line `mobiles.csv` and its etatNot) would stay
/// in the process for good.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// `sysexits.h` EX_TEMPFAIL: the only code that makes an MTA keep a message
/// and retry; every other non-zero code bounces it.
const EX_TEMPFAIL: u8 = 75;

/// The exit codes of `deliver`, shown by `mail2sms deliver --help`.
const DELIVER_EXIT_CODES: &str = "\
Exit codes (sysexits.h, as an MTA's pipe transport reads them; Postfix
retries on 75 and bounces the message on any other non-zero code):
  0   accepted (also a repeated emailId, or no emailId: etatAck says so)
  65  EX_DATAERR: the sender's fault, the message bounces: no readable
      <envoi>, or larger than smtp.max_message_size
  77  EX_NOPERM: the sender's fault, the message bounces: unknown keyid
      or sender not allowed
  75  EX_TEMPFAIL: a problem on this machine, the MTA keeps the message
      and retries: the configuration missing, unreadable or invalid, bad
      arguments, standard input unreadable, the store unavailable (disk
      full, read-only, locked), the memory budget busy, an internal error";

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let delivering = matches!(cli.command, Command::Deliver { .. });
    if delivering {
        defer_on_panic();
    }
    init_logging();
    // For `deliver`, nothing that goes wrong on this machine may bounce
    // the message: only 75 makes the MTA keep it.
    let (os_error, config_error) = if delivering {
        (EX_TEMPFAIL, EX_TEMPFAIL)
    } else {
        (71, 78) // EX_OSERR, EX_CONFIG
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mail2sms: cannot start the runtime: {e}");
            return ExitCode::from(os_error);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mail2sms: {}", error_chain(&e));
            ExitCode::from(config_error)
        }
    }
}

/// A command line clap refused: `--help` and `--version` as clap does; for
/// `deliver`, exit 75 (a typo in the MTA's `master.cf` must not bounce
/// every message), else clap's own code.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let _ = e.print();
    let delivering = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| a == "deliver");
    ExitCode::from(if delivering {
        EX_TEMPFAIL
    } else {
        u8::try_from(e.exit_code()).unwrap_or(2)
    })
}

/// Makes a panic anywhere in `deliver` (any thread) exit 75 after the usual
/// message, instead of Rust's 101, which an MTA reads as a permanent
/// failure: the message stays queued and is tried again (a request already
/// stored by then is a duplicate the next time, never a second SMS).
fn defer_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("mail2sms: internal error; exit {EX_TEMPFAIL} so that the MTA retries");
        std::process::exit(i32::from(EX_TEMPFAIL));
    }));
}

/// The error and its causes, skipping a cause its parent already quotes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = load(config.as_deref())?;
            // Listen for SIGTERM before the port opens, so a stop request
            // during start-up is a clean stop too.
            let stop = terminate();
            raise_fd_limit(config.smtp.max_connections);
            let mut running = app::start(config).await?;
            tokio::select! {
                _ = running.wait() => {}
                _ = stop => tracing::info!("stopping"),
            }
            running.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliver {
            config,
            from,
            recipients,
        } => deliver(config.as_deref(), from, recipients).await,
        Command::CheckConfig { config } => {
            let config = load(config.as_deref())?;
            print!("{}", config.summary());
            let mailer = mail2sms::replies::Mailer::new(&config.replies)?;
            println!("replies: {}", mailer.describe());
            println!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Providers {
            action: ProvidersAction::Check { config },
        } => {
            let config = load(config.as_deref())?;
            let providers = mail2sms::providers::build(&config.providers)?;
            let mut all_ok = true;
            for (name, provider) in &providers {
                let what = config.providers[name].describe();
                match provider.check().await {
                    Ok(found) => println!("provider {name} ({what}): OK, {found}"),
                    Err(e) => {
                        all_ok = false;
                        println!(
                            "provider {name} ({what}): FAILED, {} (code {}: {})",
                            e.detail,
                            e.code.0,
                            e.code.message()
                        );
                    }
                }
            }
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(69) // EX_UNAVAILABLE
            })
        }
        Command::Credits { action } => credits(action).await,
        Command::Optout { action } => optout(action).await,
        Command::HashPassword => hash_password(),
    }
}

/// `mail2sms deliver`: one message from standard input through the
/// pipeline, its verdict as the exit code. Whatever fails on this machine
/// (configuration, standard input, store) exits 75, so the MTA retries.
async fn deliver(
    config: Option<&Path>,
    from: String,
    recipients: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let config = load(config)?;
    let max = config.smtp.max_message_size;
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().take(max as u64 + 1).read_to_end(&mut raw) {
        eprintln!("mail2sms: reading the message on standard input: {e}");
        return Ok(ExitCode::from(EX_TEMPFAIL));
    }
    if raw.len() > max {
        eprintln!("552 5.3.4 message larger than smtp.max_message_size ({max} bytes)");
        return Ok(ExitCode::from(65)); // EX_DATAERR
    }
    let core = match app::Core::open(&config).await {
        Ok(core) => core,
        Err(e) => {
            eprintln!("mail2sms: {e}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    // The RCPT check an SMTP client gets (a number-like address that is no
    // number): the MTA bounces it at once instead of an SMS failing later.
    for to in &recipients {
        if let Err(reply) = core.pipeline.check_recipient(None, to) {
            eprintln!("{} {} {}", reply.code, reply.enhanced, reply.text);
            return Ok(ExitCode::from(65)); // EX_DATAERR
        }
    }
    let envelope = Envelope {
        mail_from: from,
        recipients,
        ..Envelope::default()
    };
    let verdict = core.pipeline.process(&envelope, raw).await;
    let (code, enhanced, text) = verdict.smtp_reply();
    if verdict.exit_code() == 0 {
        println!("{code} {enhanced} {text}");
    } else {
        eprintln!("{code} {enhanced} {text}");
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

/// Opens the store of a configuration for a command run beside the daemon.
async fn open_store(config: &Config) -> anyhow::Result<std::sync::Arc<dyn mail2sms::store::Store>> {
    Ok(mail2sms::store::open(&config.store).await?)
}

/// Checks that `account` is configured.
fn known_account<'a>(
    config: &'a Config,
    account: &str,
) -> anyhow::Result<&'a mail2sms::config::AccountConfig> {
    config.accounts.get(account).ok_or_else(|| {
        anyhow::anyhow!(
            "no account named `{account}` in the configuration (accounts: {})",
            config
                .accounts
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

async fn credits(action: CreditsAction) -> anyhow::Result<ExitCode> {
    let (account, config_path, amount) = match &action {
        CreditsAction::Show { account, config } => (account, config, None),
        CreditsAction::Add {
            account,
            amount,
            config,
        } => (account, config, Some(*amount)),
    };
    let config = load(config_path.as_deref())?;
    let settings = known_account(&config, account)?;
    if !settings.credits {
        eprintln!(
            "warning: account {account} has no `credits = true`: its balance is not enforced"
        );
    }
    let store = open_store(&config).await?;
    match amount {
        None => match store.credit_balance(account).await? {
            Some(balance) => println!("{account}: {balance} segments"),
            None => println!("{account}: no balance yet (0 segments)"),
        },
        Some(amount) => {
            let balance = store.add_credits(account, amount).await?;
            println!("{account}: {balance} segments");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn optout(action: OptoutAction) -> anyhow::Result<ExitCode> {
    let (account, config_path) = match &action {
        OptoutAction::Add {
            account, config, ..
        }
        | OptoutAction::Remove {
            account, config, ..
        }
        | OptoutAction::List { account, config } => (account, config),
    };
    let config = load(config_path.as_deref())?;
    // National numbers are read in the account's region; for the global
    // list, in the region every account shares. With several regions a
    // national number is ambiguous (0470… is Belgian for one account and
    // French for another): it must be given in international form.
    let regions: std::collections::BTreeSet<String> = match account {
        Some(a) => [known_account(&config, a)?.region.to_ascii_uppercase()].into(),
        None => config
            .accounts
            .values()
            .map(|a| a.region.to_ascii_uppercase())
            .collect(),
    };
    let normalise = |raw: &str| -> anyhow::Result<String> {
        let international = raw.trim_start().starts_with('+') || raw.trim_start().starts_with("00");
        let region = match regions.iter().next() {
            Some(r) if regions.len() == 1 || international => r.clone(),
            _ => anyhow::bail!(
                "`{raw}` is a national number, and the accounts read national numbers in \
                 different regions ({}): give it in international form (+33…), or use --account",
                regions.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        mail2sms::request::phone::PhoneNumber::parse(raw, &region)
            .map(|n| n.as_str().to_string())
            .map_err(|code| {
                anyhow::anyhow!("`{raw}` is not a valid phone number (code {})", code.0)
            })
    };
    let store = open_store(&config).await?;
    let scope = account.as_deref();
    let scope_name = scope.map_or("every account".to_string(), |a| format!("account {a}"));
    match &action {
        OptoutAction::Add { number, .. } => {
            let number = normalise(number)?;
            if store.optout_add(scope, &number).await? {
                println!("{number}: opted out for {scope_name}");
            } else {
                println!("{number}: already opted out for {scope_name}");
            }
        }
        OptoutAction::Remove { number, .. } => {
            let number = normalise(number)?;
            if store.optout_remove(scope, &number).await? {
                println!("{number}: removed from the list of {scope_name}");
            } else {
                println!("{number}: was not on the list of {scope_name}");
                return Ok(ExitCode::from(1));
            }
        }
        OptoutAction::List { .. } => {
            for entry in store.optout_list().await? {
                if scope.is_some() && entry.scope.is_some() && entry.scope.as_deref() != scope {
                    continue;
                }
                let when = jiff::Timestamp::from_millisecond(entry.added_at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{when}",
                    entry.number,
                    entry.scope.as_deref().unwrap_or("*")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Raises the open-files limit to its hard maximum: each SMTP session is a
/// descriptor, and the usual soft limit (1024) is below the default
/// connection cap. Warns when even the hard limit is too low.
fn raise_fd_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let mut raised = limit;
            raised.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                // e.g. a hard limit above the kernel's nr_open: try a
                // generous fixed value instead.
                raised.rlim_cur = raised.rlim_cur.min(1 << 20);
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
            }
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    let needed = max_connections as u64 + 64;
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_files = limit.rlim_cur,
            needed,
            "the open-files limit is below smtp.max_connections; raise LimitNOFILE"
        );
    }
}

/// Registers for SIGTERM and Ctrl-C now; the future completes on either.
fn terminate() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    async move {
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// `hash-password`: reads a password and prints its argon2id PHC string.
fn hash_password() -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = read_hidden("Password: ")?;
        let second = read_hidden("Again: ")?;
        if first != second {
            eprintln!("mail2sms: the passwords differ");
            return Ok(ExitCode::from(65)); // EX_DATAERR
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line
    };
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    match mail2sms::smtp::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
        Err(mail2sms::smtp::HashError::Empty) => {
            eprintln!("mail2sms: the password is empty");
            Ok(ExitCode::from(65)) // EX_DATAERR
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads one line from the terminal on standard input with echo off,
/// after printing `prompt` on standard error.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: tcgetattr/tcsetattr only read and write the struct given, on
    // standard input (a terminal: checked by the caller).
    let saved = unsafe {
        let mut term: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut term) != 0 {
            anyhow::bail!("cannot read the terminal's settings");
        }
        let mut hidden = term;
        hidden.c_lflag &= !libc::ECHO;
        hidden.c_lflag |= libc::ECHONL;
        if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &hidden) != 0 {
            anyhow::bail!("cannot turn the terminal's echo off");
        }
        term
    };
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    // SAFETY: as above; puts the saved settings back.
    unsafe {
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
    }
    read?;
    Ok(line)
}
