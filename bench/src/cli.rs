//! `--flag value` command lines, as every load generator here takes them.

/// The name this program was started as (for messages).
pub fn program() -> String {
    std::env::args()
        .next()
        .as_deref()
        .and_then(|p| std::path::Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into())
}

/// Prints `msg` and exits with status 2 (a usage or setup error, not a measurement).
pub fn die(msg: &str) -> ! {
    eprintln!("{}: {msg}", program());
    std::process::exit(2)
}

/// The process's arguments as a sequence of flags, each followed by its value.
pub struct Flags {
    args: std::vec::IntoIter<String>,
}

impl Flags {
    /// The arguments after the program name.
    pub fn from_env() -> Self {
        Self::new(std::env::args().skip(1).collect())
    }

    /// Flags from an explicit list (without the program name).
    pub fn new(args: Vec<String>) -> Self {
        Self {
            args: args.into_iter(),
        }
    }

    /// The next flag, or `None` at the end.
    pub fn next_flag(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value after `flag`; exits if there is none.
    pub fn value(&mut self, flag: &str) -> String {
        self.args
            .next()
            .unwrap_or_else(|| die(&format!("{flag} needs a value")))
    }

    /// The value after `flag`, parsed; exits if it is missing or does not parse.
    pub fn number<T: std::str::FromStr>(&mut self, flag: &str) -> T {
        let v = self.value(flag);
        v.parse()
            .unwrap_or_else(|_| die(&format!("{flag}: not a number: {v}")))
    }
}
