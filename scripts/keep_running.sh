# keep_running CMD [ARG...]: run CMD, and start it again whenever it exits (a crash, a
# SIGKILL, a clean exit alike) after KEEP_RUNNING_DELAY seconds (1 by default), as a service
# manager would (docs/deploy.md's systemd units: Restart=always). Sourced by scripts/run.sh,
# which runs it in the background; stopping its process group stops the loop and CMD.
# Tested by jobs/tests/test_watch_faults.py (a watcher SIGKILLed is started again).
keep_running() {
    local delay=${KEEP_RUNNING_DELAY:-1}
    local status
    while true; do
        "$@" && status=0 || status=$?
        if [ "$status" -gt 128 ]; then
            echo "keep_running: $* was killed by signal $((status - 128)); starting it again in $delay s" >&2
        else
            echo "keep_running: $* exited with status $status; starting it again in $delay s" >&2
        fi
        sleep "$delay"
    done
}
