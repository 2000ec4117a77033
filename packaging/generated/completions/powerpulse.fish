# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_powerpulse_global_optspecs
    string join \n config= db= h/help V/version
end

function __fish_powerpulse_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_powerpulse_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_powerpulse_using_subcommand
    set -l cmd (__fish_powerpulse_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c powerpulse -n "__fish_powerpulse_needs_command" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_needs_command" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_needs_command" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -s V -l version -d 'Print version'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "analyze" -d 'Parse an export, analyse every conversation and store the results'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "export" -d 'Write stored results, one row per conversation'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "serve" -d 'Run the HTTP control endpoint (and resume unfinished uploads)'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "uploads" -d 'List stored uploads'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "check" -d 'Check the configuration and, with an LLM configured, reach it with one cheap request and show the rate limits it announces'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "cancel" -d 'Cancel an upload running in the server: no new analyzer calls, what is stored stays (resume it with `analyze --resume`)'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "backup" -d 'Save a consistent snapshot of the database (also while `serve` runs). Restore: stop the server, put the file in place of the database, start it'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "compact" -d 'Shrink the database file after deletes (needs it alone: stop `serve` first)'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "redact" -d 'Show exactly what the LLM analyzer would send for each conversation of an export, personal data redacted as `[privacy]` says (sends and stores nothing)'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "token" -d 'Issue, list or revoke the API\'s named tokens (`[[server.tokens]]` in the config file, kept as hashes)'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "audit" -d 'The API\'s audit log, newest first: who did what, when, to which upload (every operator and admin action, and refused attempts)'
complete -c powerpulse -n "__fish_powerpulse_needs_command" -f -a "alerts" -d 'List the days a topic or an agent stood out from its own history (newest first), or acknowledge one with --ack'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l resume -d 'Continue an unfinished, cancelled or failed upload instead' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l analyzer -d 'Which analyzer to use (overrides analyzer.backend)' -r -f -a "auto\t''
lexicon\t''
openai\t''"
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l concurrency -d 'Conversations in flight at once (overrides analyzer.concurrency)' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l format -d 'Read FILE as this format (overrides ingest.format): csv, json, jsonl, xlsx, whatsapp, messenger, telegram, intercom, zendesk, freshdesk, chatwoot, threads' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l agent -d 'A sender who speaks for the business (repeat for each; `*` for any run of characters). Given, these are the whole business side for this upload: every other sender is a customer' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l json -d 'Print one JSON object with the summary on stdout'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l estimate -d 'Send nothing: print what analysing FILE with the LLM would cost (conversations after dedupe, tokens, sync and batch cost, time)'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -l dry-run -d 'Store and send nothing: print how FILE would be read (the format, where each field comes from, the senders and their roles, the first conversations as they would be analysed, the counts)'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand analyze" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -l upload -d 'Only this upload (default: every upload)' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -l format -r -f -a "csv\t''
json\t''
jsonl\t''"
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -l output -d 'Output file (default: stdout)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -l redact -d 'An export to share: personal data in conversation ids and summaries replaced as `[privacy]` says, agents as <AGENT_n>'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand export" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand serve" -l bind -d 'Address to listen on (overrides server.bind)' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand serve" -l analyzer -d 'Which analyzer to use (overrides analyzer.backend)' -r -f -a "auto\t''
lexicon\t''
openai\t''"
complete -c powerpulse -n "__fish_powerpulse_using_subcommand serve" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand serve" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand serve" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand uploads" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand uploads" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand uploads" -l json
complete -c powerpulse -n "__fish_powerpulse_using_subcommand uploads" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand check" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand check" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand check" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand cancel" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand cancel" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand backup" -l output -d 'The snapshot file to write (replaced if it exists)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand backup" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand backup" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand backup" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand compact" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand compact" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand compact" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand redact" -l preview -d 'The export to preview' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand redact" -l conversation -d 'Only this conversation' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand redact" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand redact" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand redact" -l json -d 'One JSON object per conversation: id, transcript, what was redacted'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand redact" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and not __fish_seen_subcommand_from add list remove" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and not __fish_seen_subcommand_from add list remove" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and not __fish_seen_subcommand_from add list remove" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and not __fish_seen_subcommand_from add list remove" -f -a "add" -d 'Issue a token: printed once on stdout; its hash is added to the config file (`--config`, or ./config.toml). The server reads it at its next start'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and not __fish_seen_subcommand_from add list remove" -f -a "list" -d 'Who holds a token, with its role'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and not __fish_seen_subcommand_from add list remove" -f -a "remove" -d 'Revoke a token (at the server\'s next start)'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from add" -l role -r -f -a "viewer\t'Summaries, insights, conversation lists and results, exports; transcripts redacted'
operator\t'Also uploads, estimates, cancel, resume, full transcripts'
admin\t'Also delete, backup, the audit log'"
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from add" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from add" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from list" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from remove" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from remove" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand token; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l who -d 'Only this token\'s entries (its name)' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l action -d 'Only this action: upload, estimate, preview, cancel, resume, delete, backup, transcript, read_audit, acknowledge_alert' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l upload -d 'Only entries about this upload' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l limit -d 'At most this many entries' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -l json
complete -c powerpulse -n "__fish_powerpulse_using_subcommand audit" -s h -l help -d 'Print help'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l from -d 'Only alerts of this day (YYYY-MM-DD) or later' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l to -d 'Only alerts of this day (YYYY-MM-DD) or earlier' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l ack -d 'Acknowledge this alert (its id, as listed) instead of listing' -r
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l config -d 'Config file (default: ./config.toml when present; else, for root, /etc/powerpulse/config.toml when installed)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l db -d 'Database file (overrides storage.path)' -r -F
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l open -d 'Only the alerts nobody acknowledged yet'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -l json -d 'Print one JSON object, `{"alerts": [...]}` (as `GET /api/alerts`)'
complete -c powerpulse -n "__fish_powerpulse_using_subcommand alerts" -s h -l help -d 'Print help'
