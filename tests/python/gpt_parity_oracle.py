#!/usr/bin/env python3
"""PyTorch oracle for Longhaul's model and inner optimizer (driven by tests/inner/gpt_parity_test.cpp).

The C++ test writes files into --dir, runs this script with the venv's python (the same torch
version as the linked LibTorch) and checks the exit status (0 = parity, 1 = mismatch, 2 = bad
input). The reference model is nanoGPT's GPT (tests/python/nanogpt_model.py, MIT).

  logits: load DIR/model (model.json + model.safetensors, written by export_model) into nanoGPT's
          GPT with load_state_dict(strict=True); compare the logits and the loss of the batch in
          DIR/batch.safetensors (idx, targets, logits, loss) with the C++ values; write torch's
          own logits to DIR/torch_logits.safetensors with safetensors.torch.save_file.
  adamw:  from DIR/init, run the steps of DIR/optim.json with nanoGPT's configure_optimizers
          (torch.optim.AdamW, two groups), train.py's get_lr and clip_grad_norm_ on the batches of
          DIR/batches.safetensors; compare lr, loss and pre-clip grad norm of every step
          (DIR/cpp_trace.safetensors) and the final weights (DIR/final/model.safetensors).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_model import GPT, GPTConfig, get_lr  # noqa: E402


def load_model(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        cfg = json.load(f)
    model = GPT(GPTConfig(**cfg))
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    model.load_state_dict(state, strict=True)  # every nanoGPT key present, no extra key
    assert model.lm_head.weight is model.transformer.wte.weight
    assert torch.equal(state["lm_head.weight"], state["transformer.wte.weight"]), "export lm_head != wte"
    return model, cfg


def rel_err(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)


def check_logits(d, tol):
    model, cfg = load_model(os.path.join(d, "model"))
    model.eval()
    batch = load_file(os.path.join(d, "batch.safetensors"))
    with torch.no_grad():
        logits, loss = model(batch["idx"], batch["targets"])
    diff = (logits - batch["logits"]).abs().max().item()
    loss_diff = abs(loss.item() - batch["loss"].item())
    print(f"config {cfg}; logits {tuple(logits.shape)}: max |torch - longhaul| = {diff:.3e} (tol {tol:g}); "
          f"loss torch {loss.item():.7f} longhaul {batch['loss'].item():.7f} diff {loss_diff:.3e}")
    ok = logits.shape == batch["logits"].shape and diff <= tol and loss_diff <= tol
    # The other direction: a file from the official safetensors writer, for the C++ reader.
    save_file({"logits": logits.contiguous(), "loss": loss.reshape(1), "idx": batch["idx"]},
              os.path.join(d, "torch_logits.safetensors"), metadata={"writer": "safetensors.torch"})
    return ok


def check_adamw(d, rtol):
    model, cfg = load_model(os.path.join(d, "init"))
    model.train()
    with open(os.path.join(d, "optim.json")) as f:
        o = json.load(f)
    batches = load_file(os.path.join(d, "batches.safetensors"))
    trace = load_file(os.path.join(d, "cpp_trace.safetensors"))
    opt = model.configure_optimizers(o["weight_decay"], o["lr"], (o["beta1"], o["beta2"]), "cpu")
    for g in opt.param_groups:
        g["eps"] = o["eps"]
    ok = True
    for it in range(o["steps"]):
        lr = get_lr(it, o["lr"], o["min_lr"], o["warmup_steps"], o["decay_steps"])
        for g in opt.param_groups:
            g["lr"] = lr
        _, loss = model(batches["idx"][it], batches["targets"][it])
        loss.backward()
        if it == 0:
            g = model.transformer.h[0].attn.c_attn.bias.grad
            C = cfg["n_embd"]
            print(f"step 0 c_attn.bias grad: max|query part| {g[:C].abs().max().item():.3e}, "
                  f"max|key part| {g[C:2 * C].abs().max().item():.3e}")
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"]).item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        c_lr, c_loss, c_norm = (trace[k][it].item() for k in ("lrs", "losses", "norms"))
        step_ok = (abs(lr - c_lr) <= 1e-15 * lr and abs(loss.item() - c_loss) <= rtol * abs(loss.item())
                   and abs(norm - c_norm) <= rtol * norm)
        print(f"step {it:2d} lr {lr:.6e}/{c_lr:.6e} loss {loss.item():.7f}/{c_loss:.7f} "
              f"grad_norm {norm:.6f}/{c_norm:.6f} {'ok' if step_ok else 'MISMATCH'}")
        ok &= step_ok
    final = load_file(os.path.join(d, "final", "model.safetensors"))
    state = model.state_dict()
    C = cfg["n_embd"]
    worst = 0.0
    for name, ref in state.items():
        got = final[name]
        if name.endswith("attn.c_attn.bias"):
            # The key bias adds q·b_k to every score of a query: softmax is invariant to it, so
            # its gradient is exactly 0 in exact arithmetic and pure rounding noise in practice,
            # which Adam normalises into lr-sized steps of arbitrary sign in BOTH implementations.
            # Compare the query and value biases; only report the key slice.
            key_diff = (got[C:2 * C] - ref[C:2 * C]).abs().max().item()
            print(f"{name}[{C}:{2 * C}] (key bias, gradient ~0 by symmetry): max|diff| {key_diff:.3e} (not compared)")
            got = torch.cat([got[:C], got[2 * C:]])
            ref = torch.cat([ref[:C], ref[2 * C:]])
        err = rel_err(got, ref)
        worst = max(worst, err)
        if err > rtol:
            print(f"final weight {name}: max|diff|/max|w| = {err:.3e} > {rtol:g}")
            ok = False
    init = load_file(os.path.join(d, "init", "model.safetensors"))
    flat = lambda sd: torch.cat([sd[n].flatten() for n in state])  # noqa: E731
    moved = ((flat(state) - flat(init)).norm() / flat(init).norm()).item()
    print(f"final weights: worst max|torch - longhaul|/max|w| over {len(state)} tensors = {worst:.3e} "
          f"(tol {rtol:g}); ||final - init|| / ||init|| = {moved:.3e}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["logits", "adamw"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        ok = check_logits(args.dir, args.tol) if args.mode == "logits" else check_adamw(args.dir, args.tol)
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        print(f"oracle input error: {type(e).__name__}: {e}")
        return 2
    print("PARITY OK" if ok else "PARITY MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
