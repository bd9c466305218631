"""The workspaces the CUDA products plan (graphc/ops/reduce.py, attention.py; used by
runtime/cuda/matmul.cu, attention.cu): planned only for target "cuda", sized as the kernels read
them, and the CPU plans unchanged.  Compile-only: runs without a GPU or a CUDA build."""

import graphc as gc
from graphc.ops.attention import ATTN_CUDA_SCORES
from graphc.ops.reduce import CUBLASLT_WORKSPACE_LARGE, CUBLASLT_WORKSPACE_SMALL


def _workspaces(plan):
    """{op: [(dtype, dims), ...]} of the plan's steps that have workspaces."""
    out = {}
    for s in plan.proto.steps:
        for w in s.workspaces:
            v = plan.proto.values[w]
            out.setdefault(s.op, []).append((v.dtype, tuple(v.dims)))
    return out


def _matmul_plan(m, k, n, target):
    with gc.Graph() as g:
        a = gc.placeholder("a", (m, k))
        b = gc.placeholder("b", (k, n))
        y = gc.matmul(a, b)
    return gc.compile(g, fetches=[y.name], target=target)


def test_matmul_plans_a_cublaslt_workspace_for_cuda_only():
    small = _workspaces(_matmul_plan(8, 16, 32, "cuda"))["matmul"]
    large = _workspaces(_matmul_plan(512, 512, 512, "cuda"))["matmul"]
    assert [d for _, d in small] == [(CUBLASLT_WORKSPACE_SMALL // 4,)]
    assert [d for _, d in large] == [(CUBLASLT_WORKSPACE_LARGE // 4,)]
    assert "matmul" not in _workspaces(_matmul_plan(512, 512, 512, "cpu"))
    assert "matmul" not in _workspaces(_matmul_plan(8, 0, 32, "cuda"))  # k = 0: no product to run


def _attention_plan(lead, L, S, E, target):
    with gc.Graph() as g:
        q = gc.placeholder("q", lead + (L, E))
        k = gc.placeholder("k", lead + (S, E))
        v = gc.placeholder("v", lead + (S, E))
        o = gc.scaled_dot_product_attention(q, k, v, causal=True)
        loss = gc.sum(gc.mul(o, o))
        grads = gc.gradients(loss, [q, k, v])
    return gc.compile(g, fetches=[o.name] + [t.name for t in grads], target=target)


def test_attention_plans_scores_and_delta_for_cuda():
    lead, L, S, E = (2, 3), 40, 50, 8
    ws = _workspaces(_attention_plan(lead, L, S, E, "cuda"))
    batch = 6
    assert [d for _, d in ws["scaled_dot_product_attention"]] == [(batch * L * S,)]
    assert [d for _, d in ws["scaled_dot_product_attention_grad"]] == [(batch * L,), (batch * 2 * L * S,)]


def test_attention_scores_are_chunked_under_the_budget():
    lead, L, S, E = (3,), 2048, 3000, 4  # one item: 6.1M scores, two fit in 2^24, not three
    ws = _workspaces(_attention_plan(lead, L, S, E, "cuda"))
    (fwd,) = [d for _, d in ws["scaled_dot_product_attention"]]
    assert fwd == (2 * L * S,) and fwd[0] <= ATTN_CUDA_SCORES
    d, scores = [d for _, d in ws["scaled_dot_product_attention_grad"]]
    assert d == (3 * L,) and scores == (1 * 2 * L * S,)


def test_attention_cpu_plan_keeps_the_cpu_workspace():
    ws = _workspaces(_attention_plan((2,), 40, 50, 8, "cpu"))
    assert len(ws["scaled_dot_product_attention"]) == 1 and len(ws["scaled_dot_product_attention_grad"]) == 1
    # the CPU's slot rows (graphc/ops/attention.py _workspace), not the CUDA score matrices
    assert ws["scaled_dot_product_attention"][0][1][0] <= 8
