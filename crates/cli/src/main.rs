//! skiff: a docker-compatible command-line client of the Engine API.

mod client;
mod commands;
mod format;
mod opts;
mod stream;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{analysis, container, cp, image, network, run, stats, system, volume};

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    version,
    about = "Build, ship and run containers (docker-compatible CLI)",
    disable_help_subcommand = true
)]
struct Cli {
    /// Daemon socket to connect to (unix:///path); default $DOCKER_HOST or unix:///run/skiff.sock
    #[arg(short = 'H', long, global = true)]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::RunArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Execute a command in a running container
    Exec(run::ExecArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Return low-level information on Docker objects
    Inspect(container::InspectArgs),
    /// Display the running processes of a container; without one, the live view of all
    /// containers and the host
    Top(stats::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Is it the host or the container? Sample both and say which limits the container
    Diagnose(analysis::DiagnoseArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Pause all processes within one or more containers
    Pause(container::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(container::NamesArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::NamesArgs),
    /// Update configuration of one or more containers
    Update(container::UpdateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::OneArgs),
    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// Build an image from a Dockerfile
    Build(commands::build::BuildArgs),
    /// Authenticate to a registry
    Login(commands::registry_auth::LoginArgs),
    /// Log out from a registry
    Logout(commands::registry_auth::LogoutArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Show the skiff version information
    Version(system::VersionArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Manage skiff
    #[command(subcommand)]
    System(SystemCmd),
    /// Run skiff's OCI registry (standalone, no daemon needed)
    #[command(subcommand)]
    Registry(commands::registry::RegistryCmd),
}

#[derive(Subcommand, Debug)]
enum ContainerCmd {
    Run(run::RunArgs),
    Create(run::RunArgs),
    Start(run::StartArgs),
    Attach(run::AttachArgs),
    Exec(run::ExecArgs),
    #[command(alias = "ps", alias = "list")]
    Ls(container::PsArgs),
    Stop(container::StopArgs),
    Restart(container::StopArgs),
    Kill(container::KillArgs),
    #[command(alias = "remove")]
    Rm(container::RmArgs),
    Logs(container::LogsArgs),
    Inspect(container::InspectArgs),
    Top(stats::TopArgs),
    Port(network::PortArgs),
    Stats(stats::StatsArgs),
    Cp(cp::CpArgs),
    Rename(container::RenameArgs),
    Pause(container::NamesArgs),
    Unpause(container::NamesArgs),
    Wait(container::NamesArgs),
    Update(container::UpdateArgs),
    Diff(container::OneArgs),
    Export(container::ExportArgs),
    Commit(container::CommitArgs),
    /// Remove all stopped containers
    Prune(container::PruneArgs),
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    #[command(alias = "list")]
    Ls(image::ImagesArgs),
    #[command(alias = "remove")]
    Rm(image::RmiArgs),
    Tag(image::TagArgs),
    History(image::HistoryArgs),
    Import(image::ImportArgs),
    Load(image::LoadArgs),
    Save(image::SaveArgs),
    Pull(image::PullArgs),
    Push(image::PushArgs),
    Build(commands::build::BuildArgs),
    /// Make base images (busybox, debian:bookworm, httpd:2.4) from Debian's packages
    Bootstrap(commands::bootstrap::BootstrapArgs),
    Inspect(image::ImageInspectArgs),
    /// Remove unused images
    Prune(image::ImagePruneArgs),
}

#[derive(Subcommand, Debug)]
enum SystemCmd {
    /// Show docker disk usage
    Df(system::DfArgs),
    Info(system::InfoArgs),
    Events(system::EventsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Registry(r) = cli.cmd {
        return match commands::registry::run(r) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("skiff registry: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff: {e}");
            return ExitCode::from(125);
        }
    };
    let client = match client::Client::from_env(cli.host.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skiff: {e}");
            return ExitCode::from(125);
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Run(a) | Cmd::Container(ContainerCmd::Run(a)) => run::run(&client, a).await,
            Cmd::Create(a) | Cmd::Container(ContainerCmd::Create(a)) => run::create(&client, a).await,
            Cmd::Start(a) | Cmd::Container(ContainerCmd::Start(a)) => run::start(&client, a).await,
            Cmd::Attach(a) | Cmd::Container(ContainerCmd::Attach(a)) => run::attach(&client, a).await,
            Cmd::Exec(a) | Cmd::Container(ContainerCmd::Exec(a)) => run::exec(&client, a).await,
            Cmd::Ps(a) | Cmd::Container(ContainerCmd::Ls(a)) => container::ps(&client, a).await,
            Cmd::Stop(a) | Cmd::Container(ContainerCmd::Stop(a)) => container::stop(&client, a, "stop").await,
            Cmd::Restart(a) | Cmd::Container(ContainerCmd::Restart(a)) => container::stop(&client, a, "restart").await,
            Cmd::Kill(a) | Cmd::Container(ContainerCmd::Kill(a)) => container::kill(&client, a).await,
            Cmd::Rm(a) | Cmd::Container(ContainerCmd::Rm(a)) => container::rm(&client, a).await,
            Cmd::Logs(a) | Cmd::Container(ContainerCmd::Logs(a)) => container::logs(&client, a).await,
            Cmd::Inspect(a) => container::inspect(&client, a).await,
            Cmd::Container(ContainerCmd::Inspect(mut a)) => {
                a.kind = Some("container".into());
                container::inspect(&client, a).await
            }
            Cmd::Top(a) | Cmd::Container(ContainerCmd::Top(a)) => stats::top(&client, a).await,
            Cmd::Stats(a) | Cmd::Container(ContainerCmd::Stats(a)) => stats::stats(&client, a).await,
            Cmd::Diagnose(a) => analysis::diagnose(&client, a).await,
            Cmd::Cp(a) | Cmd::Container(ContainerCmd::Cp(a)) => cp::cp(&client, a).await,
            Cmd::Rename(a) | Cmd::Container(ContainerCmd::Rename(a)) => container::rename(&client, a).await,
            Cmd::Pause(a) | Cmd::Container(ContainerCmd::Pause(a)) => container::simple(&client, a, "pause").await,
            Cmd::Unpause(a) | Cmd::Container(ContainerCmd::Unpause(a)) => {
                container::simple(&client, a, "unpause").await
            }
            Cmd::Wait(a) | Cmd::Container(ContainerCmd::Wait(a)) => container::wait(&client, a).await,
            Cmd::Update(a) | Cmd::Container(ContainerCmd::Update(a)) => container::update(&client, a).await,
            Cmd::Diff(a) | Cmd::Container(ContainerCmd::Diff(a)) => container::diff(&client, a).await,
            Cmd::Export(a) | Cmd::Container(ContainerCmd::Export(a)) => container::export(&client, a).await,
            Cmd::Commit(a) | Cmd::Container(ContainerCmd::Commit(a)) => container::commit(&client, a).await,
            Cmd::Container(ContainerCmd::Prune(a)) => container::prune(&client, a).await,
            Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => image::images(&client, a).await,
            Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => image::rmi(&client, a).await,
            Cmd::Tag(a) | Cmd::Image(ImageCmd::Tag(a)) => image::tag(&client, a).await,
            Cmd::History(a) | Cmd::Image(ImageCmd::History(a)) => image::history(&client, a).await,
            Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => image::import(&client, a).await,
            Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => image::load(&client, a).await,
            Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => image::save(&client, a).await,
            Cmd::Pull(a) | Cmd::Image(ImageCmd::Pull(a)) => image::pull(&client, a).await,
            Cmd::Push(a) | Cmd::Image(ImageCmd::Push(a)) => image::push(&client, a).await,
            Cmd::Build(a) | Cmd::Image(ImageCmd::Build(a)) => commands::build::build(&client, a).await,
            Cmd::Image(ImageCmd::Bootstrap(a)) => commands::bootstrap::bootstrap(&client, a).await,
            Cmd::Login(a) => commands::registry_auth::login(&client, a).await,
            Cmd::Logout(a) => commands::registry_auth::logout(a).await,
            Cmd::Image(ImageCmd::Inspect(a)) => image::inspect(&client, a).await,
            Cmd::Image(ImageCmd::Prune(a)) => image::prune(&client, a).await,
            Cmd::Volume(v) => volume::run(&client, v).await,
            Cmd::Network(n) => network::run(&client, n).await,
            Cmd::Port(a) | Cmd::Container(ContainerCmd::Port(a)) => network::port(&client, a).await,
            Cmd::Info(a) | Cmd::System(SystemCmd::Info(a)) => system::info(&client, a).await,
            Cmd::Version(a) => system::version(&client, a).await,
            Cmd::Events(a) | Cmd::System(SystemCmd::Events(a)) => system::events(&client, a).await,
            Cmd::System(SystemCmd::Df(a)) => system::df(&client, a).await,
            Cmd::Registry(_) => unreachable!("handled before the client is built"),
        }
    });
    // A blocking read of stdin may still be pending: do not wait for it.
    rt.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = commands::exit_code_for(&e);
            eprintln!("{}", commands::error_text(&e));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
