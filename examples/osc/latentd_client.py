#!/usr/bin/env python3
"""latentd from Python (python-osc). Generated from osc-schema (cargo run -p latentd-osc-schema --example gen); do not edit.

    python3 latentd_client.py set denoise 0.7      # set a knob (no reply on success)
    python3 latentd_client.py get denoise          # query one knob
    python3 latentd_client.py knobs                # query all knobs
    python3 latentd_client.py status               # /status
    python3 latentd_client.py send /prompt "ambient, piano"
    python3 latentd_client.py watch                # subscribe and print pushes
"""
import argparse
import socket
import sys

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

# name: (min, max, default, integer)
KNOBS = {
    "denoise": (0, 1, 0.5, False),
    "sampler": (0, 1, 0, True),
    "sde_amp": (0, 1, 0.5, False),
    "periodicity": (0, 12.5, 0, False),
    "seed": (0, 4294967295, 0, True),
    "shift": (1, 6, 3.5, False),
    "guidance": (1, 15, 1, False),
    "cfg_rescale": (0, 1, 0, False),
    "x0_target": (0, 1, 0, False),
    "feedback": (0, 1, 0, False),
    "feedback_depth": (1, 8, 1, True),
    "ch_g0": (0, 3, 1, False),
    "ch_g1": (0, 3, 1, False),
    "ch_g2": (0, 3, 1, False),
    "ch_g3": (0, 3, 1, False),
    "ch_g4": (0, 3, 1, False),
    "ch_g5": (0, 3, 1, False),
    "ch_g6": (0, 3, 1, False),
    "ch_g7": (0, 3, 1, False),
    "steps": (1, 16, 8, True),
    "depth": (1, 8, 4, True),
    "timbre_strength": (0, 1, 0.5, False),
    "structure_strength": (0, 1, 0.5, False),
    "prompt_blend": (0, 1, 0, False),
}


def build(address, args):
    builder = OscMessageBuilder(address=address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def messages(dgram):
    if OscBundle.dgram_is_bundle(dgram):
        for element in OscBundle(dgram):
            yield from messages(element.dgram)
    else:
        message = OscMessage(dgram)
        yield message.address, list(message.params)


def parse_arg(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main():
    parser = argparse.ArgumentParser(description="talk to latentd over OSC/UDP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7770)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for replies")
    parser.add_argument("command", choices=["set", "get", "knobs", "status", "version", "send", "watch"])
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(opts.timeout)
    server = (opts.host, opts.port)
    expect_reply = True
    if opts.command == "set":
        name, value = opts.args
        low, high, _default, integer = KNOBS[name]
        value = int(value) if integer else float(value)
        if not low <= value <= high:
            sys.exit(f"{name} takes a value in [{low}, {high}]")
        packet, expect_reply = build(f"/knob/{name}", [value]), False
    elif opts.command == "get":
        packet = build(f"/knob/{opts.args[0]}", [])
    elif opts.command == "send":
        packet = build(opts.args[0], [parse_arg(a) for a in opts.args[1:]])
    elif opts.command == "watch":
        packet = build("/notify", [1])
    else:
        packet = build("/" + opts.command, [])
    sock.sendto(packet, server)

    failed = False
    while expect_reply or opts.command == "watch":
        try:
            dgram, _ = sock.recvfrom(65536)
        except socket.timeout:
            if opts.command == "watch":
                continue
            break
        for address, params in messages(dgram):
            print(address, *params, flush=True)
            failed |= address == "/fail"
        if opts.command in ("get", "status", "version", "set", "send"):
            break
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
