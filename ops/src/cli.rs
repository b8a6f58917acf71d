//! The command line of the binaries with subcommands (`service`, `relay`): `BIN [COMMAND]
//! [FLAGS]`, where no command runs the default and every flag is also an environment variable.

use std::ffi::OsString;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// What `--help` and `--version` say of a binary. Build it with [`program!`](crate::program) so
/// the name and version are the calling crate's.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub version: &'static str,
    pub about: &'static str,
}

/// The calling crate's [`Program`], with `about` as its one-line description.
#[macro_export]
macro_rules! program {
    ($about:expr) => {
        $crate::cli::Program {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            about: $about,
        }
    };
}

/// A binary's parsed command line. A subcommand lifts the flags only the default run needs.
#[derive(Debug, Clone, Parser)]
#[command(subcommand_negates_reqs = true)]
pub struct Cli<C: Subcommand, A: Args> {
    #[command(subcommand)]
    pub command: Option<C>,
    #[command(flatten)]
    pub config: A,
}

impl<C: Subcommand, A: Args> Cli<C, A> {
    /// Parses the process's arguments; prints help, the version or the error and exits as clap
    /// does.
    pub fn parse_as(program: Program) -> Self {
        Self::try_parse_as(program, std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first one is the binary's name).
    pub fn try_parse_as<I, T>(program: Program, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Self::command()
            .name(program.name)
            .version(program.version)
            .about(program.about)
            .long_about(None);
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Subcommand)]
    enum Command {
        Check,
    }

    #[derive(Debug, Clone, Args)]
    struct Config {
        #[arg(long, required = true)]
        url: Option<String>,
    }

    const PROGRAM: Program = program!("checks things");

    #[test]
    fn help_and_version_name_the_calling_program_and_a_command_lifts_required_flags() {
        let help = Cli::<Command, Config>::try_parse_as(PROGRAM, ["x", "--help"]).unwrap_err();
        let help = help.to_string();
        assert!(help.contains("checks things"), "{help}");
        assert!(help.contains("--url <URL>"), "{help}");
        let version = Cli::<Command, Config>::try_parse_as(PROGRAM, ["x", "--version"]);
        let version = version.unwrap_err().to_string();
        assert_eq!(version.trim(), format!("ops {}", env!("CARGO_PKG_VERSION")));

        let missing = Cli::<Command, Config>::try_parse_as(PROGRAM, ["x"]).unwrap_err();
        assert!(missing.to_string().contains("--url"), "{missing}");
        let check = Cli::<Command, Config>::try_parse_as(PROGRAM, ["x", "check"]).unwrap();
        assert!(matches!(check.command, Some(Command::Check)));
        let run = Cli::<Command, Config>::try_parse_as(PROGRAM, ["x", "--url", "u"]).unwrap();
        assert!(run.command.is_none());
        assert_eq!(run.config.url.as_deref(), Some("u"));
    }
}
