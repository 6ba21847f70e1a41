"""``lockheed completion bash|zsh|fish``: shell completion scripts.

The scripts are generated from the argument parser itself, so they offer
exactly the commands and options ``--help`` shows (no internal command), the
choices of options such as ``-o`` and ``--backend``, and, for commands that
take a lock name, the names of the locks: they run ``lockheed list -o name``
with the ``--kubeconfig``, ``--context``, ``-n`` and ``--backend`` already
typed. They complete ``lockheed`` and ``kubectl-lockheed``.

Failure semantics: printing a script cannot fail; a lock listing that fails
while completing offers no names and prints nothing.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

__all__ = ["add_completion_parser", "script"]

SHELLS = ("bash", "zsh", "fish")
PROGRAMS = ("lockheed", "kubectl-lockheed")
# Commands whose positional argument is a lock name.
NAMED = ("run", "elect", "show", "break", "watch")
# Options passed on to ``lockheed list -o name`` when completing a lock name.
PASSED = ("--kubeconfig", "--context", "-n", "--namespace", "--backend", "--prefix")


def add_completion_parser(sub: Any) -> None:
    comp = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for SHELL. bash: "
        "'source <(lockheed completion bash)'; zsh: 'source <(lockheed completion zsh)'; "
        "fish: 'lockheed completion fish | source'.",
        epilog="Exit statuses: 0 printed; 2 bad usage (a shell it does not know).",
    )
    comp.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    comp.set_defaults(func=_completion)


def _completion(args: argparse.Namespace) -> int:
    from ._cli import parser

    print(script(parser(), args.shell), end="")
    return 0


def _commands(top: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """The public subcommands: name -> (parser, help)."""
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {n: (p, helps[n]) for n, p in action.choices.items() if n in helps}
    return {}


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and a.help != argparse.SUPPRESS]


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def script(top: argparse.ArgumentParser, shell: str) -> str:
    commands = _commands(top)
    if shell == "fish":
        return _fish(commands)
    body = _bash(commands)
    if shell == "zsh":
        return (
            "#compdef lockheed kubectl-lockheed\nautoload -U +X bashcompinit && bashcompinit\n"
            + body
        )
    return body


def _bash(commands: dict[str, tuple[argparse.ArgumentParser, str]]) -> str:
    cases = []
    values: set[str] = set()
    chosen: set[str] = set()
    choices: dict[str, str] = {}
    for name, (p, _) in commands.items():
        words: list[str] = []
        for action in _options(p):
            words += action.option_strings
            if _takes_value(action):
                values.update(action.option_strings)
                if action.choices:
                    for option in action.option_strings:
                        key = f"{name} {option}"
                        choices[key] = " ".join(str(c) for c in action.choices)
                        chosen.add(option)
        positional = [a for a in p._actions if not a.option_strings and a.choices]
        extra = " ".join(str(c) for a in positional for c in (a.choices or ()))
        cases.append(
            f"        {name}) opts={shlex.quote(' '.join(words))}; words={shlex.quote(extra)};;"
        )
    choice_cases = "\n".join(
        f'        {shlex.quote(key)}) COMPREPLY=($(compgen -W {shlex.quote(words)} -- "$cur")); '
        "return;;"
        for key, words in sorted(choices.items())
    )
    files = "|".join(sorted({"--kubeconfig"} & values))
    valued = "|".join(sorted(values - {"--kubeconfig"}))
    top_words = " ".join([*commands, "--help", "--version"])
    passed = "|".join(PASSED)
    return f"""# lockheed completion for bash (source it, e.g. source <(lockheed completion bash))
_lockheed() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmd="" i opts="" words="" named="" listing=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {passed}) listing+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}"); ((i++));;
            {valued or "--no-such-option"}|{files or "--no-such-option"}) ((i++));;
            -*) ;;
            *) if [[ -z "$cmd" ]]; then cmd="${{COMP_WORDS[i]}}"; else named=1; fi;;
        esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W {shlex.quote(top_words)} -- "$cur")); return
    fi
    case "$cmd $prev" in
{choice_cases}
    esac
    case "$prev" in
        {files or "--no-such-option"}) COMPREPLY=($(compgen -f -- "$cur")); return;;
        {valued or "--no-such-option"}) COMPREPLY=(); return;;
    esac
    case "$cmd" in
{chr(10).join(cases)}
        *) return;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur")); return
    fi
    case "$cmd" in
        {"|".join(NAMED)})
            if [[ -z "$named" ]]; then
                local names
                names="$("${{COMP_WORDS[0]}}" list -o name "${{listing[@]}}" 2>/dev/null)"
                COMPREPLY=($(compgen -W "$names" -- "$cur"))
            fi;;
        *) COMPREPLY=($(compgen -W "$words" -- "$cur"));;
    esac
}}
complete -o default -F _lockheed {" ".join(PROGRAMS)}
"""


def _fish(commands: dict[str, tuple[argparse.ArgumentParser, str]]) -> str:
    passed = " ".join(PASSED)
    lines = [
        "# lockheed completion for fish (lockheed completion fish | source)",
        "function __lockheed_locks",
        "    # the lock names, from the cluster and namespace already typed",
        "    set -l tokens (commandline -opc)",
        "    set -l options",
        "    set -l i 2",
        "    while test $i -lt (count $tokens)",
        "        set -l next (math $i + 1)",
        f"        if contains -- $tokens[$i] {passed}",
        "            set -a options $tokens[$i] $tokens[$next]",
        "            set i $next",
        "        end",
        "        set i (math $i + 1)",
        "    end",
        "    $tokens[1] list -o name $options 2>/dev/null",
        "end",
    ]
    names = " ".join(commands)
    for program in PROGRAMS:
        c = f"complete -c {program}"
        lines.append(f"{c} -f")
        lines.append(f"{c} -n 'not __fish_seen_subcommand_from {names}' -l version -d 'version'")
        for name, (p, text) in commands.items():
            lines.append(
                f"{c} -n 'not __fish_seen_subcommand_from {names}' -a {name} -d {shlex.quote(text)}"
            )
            when = f"-n '__fish_seen_subcommand_from {name}'"
            for action in _options(p):
                flags = []
                for option in action.option_strings:
                    if option.startswith("--"):
                        flags.append(f"-l {option[2:]}")
                    else:
                        flags.append(f"-s {option[1:]}")
                value = ""
                if "--kubeconfig" in action.option_strings:
                    value = " -r -F"
                elif _takes_value(action):
                    value = " -x"
                    if action.choices:
                        value += " -a " + shlex.quote(" ".join(str(x) for x in action.choices))
                helptext = shlex.quote((action.help or "").replace("%(prog)s", "lockheed"))
                lines.append(f"{c} {when} {' '.join(flags)}{value} -d {helptext}")
            positional = [a for a in p._actions if not a.option_strings and a.choices]
            for action in positional:
                words = " ".join(str(x) for x in action.choices or ())
                lines.append(f"{c} {when} -a {shlex.quote(words)}")
            if name in NAMED:
                lines.append(f"{c} {when} -a '(__lockheed_locks)'")
    return "\n".join(lines) + "\n"
