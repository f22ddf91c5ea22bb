"""rag_guard: a LlamaIndex multimodal index whose query, retrieved nodes and answer are judged.

The index holds the texts and images in ``data/`` (one text about a bomb, one about stealing a
car and one red "forum" image are unsafe). A question goes through
``GuardedQueryEngine`` (input rail before retrieval, output rail on the answer) around a query
engine whose ``OmniGuardPostprocessor(on_unsafe="drop")`` removes unsafe nodes before the LLM
reads them. To show *why* a node was dropped, the same nodes are also run through an
``on_unsafe="annotate"`` postprocessor (the judge's cache answers it: no second model call).
Embeddings and LLM are LlamaIndex's ``MockEmbedding`` and ``MockLLM`` (which echoes its prompt,
so the answer shows what reached it): no network.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import ImageNode, TextNode
from llama_index_omniguard import GuardedQueryEngine, OmniGuardPostprocessor

from omniguard_plugins import OmniGuard

__all__ = ["DATA_DIR", "NodeRow", "RagGuard", "Report"]

DATA_DIR = Path(__file__).resolve().parent / "data"
IMAGE_CAPTIONS = {"sky.png": "a photo of the sky over Paris in spring",
                  "red.png": "an image attached to the scraped forum post"}


@dataclass
class NodeRow:
    node_id: str
    kind: str
    text: str
    kept: bool
    verdict: dict[str, Any]
    image_path: str | None = None


@dataclass
class Report:
    question: str
    answer: str
    #: the rail that refused the question or the answer, if one did
    blocked: dict[str, Any] | None = None
    nodes: list[NodeRow] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as terminal lines."""
        out = [f"Q: {self.question}"]
        if self.blocked:
            b = self.blocked
            out.append(f"   refused by the {b['stage']} rail: {b['label']} {b.get('names', [])}")
        for row in self.nodes:
            why = ", ".join(row.verdict.get("names", [])) or row.verdict.get("error") or ""
            fate = "kept   " if row.kept else "DROPPED"
            out.append(f"   {fate} {row.node_id:16} {row.kind:5} {row.verdict['label']:7} {why}")
        out.append("A: " + " ".join(self.answer.split())[:300])
        return out


class RagGuard:
    """The index, the guarded engine and the annotating inspector, built once on one judge."""

    def __init__(self, judge: OmniGuard, data_dir: Path = DATA_DIR) -> None:
        self.judge = judge
        nodes: list[TextNode] = [TextNode(text=p.read_text().strip(), id_=p.stem)
                                 for p in sorted(data_dir.glob("*.txt"))]
        nodes += [ImageNode(image_path=str(p), text=IMAGE_CAPTIONS.get(p.name, p.stem), id_=p.name)
                  for p in sorted(data_dir.glob("*.png"))]
        self.nodes = {n.node_id: n for n in nodes}
        index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
        top_k = len(nodes)  # retrieve everything: the point is to see the judge sort it
        engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=top_k,
                                       node_postprocessors=[OmniGuardPostprocessor(judge=judge, on_unsafe="drop")])
        self.engine = GuardedQueryEngine(engine, judge=judge)
        self.retriever = index.as_retriever(similarity_top_k=top_k)
        self.inspector = OmniGuardPostprocessor(judge=judge, on_unsafe="annotate")

    def _named(self, info: dict[str, Any]) -> dict[str, Any]:
        """The verdict summary (``summarize().to_json()``), with its category names as ``names``."""
        return {**info, "names": list(info.get("category_names", []))}

    def ask(self, question: str) -> Report:
        response = self.engine.query(question)
        meta = (response.metadata or {}).get("omniguard")
        report = Report(question, str(response), self._named(meta) if meta and meta.get("blocked") else None)
        if report.blocked and report.blocked.get("stage") == "input":
            return report  # refused before retrieval: no node was read
        kept = {item.node.node_id for item in response.source_nodes}
        annotated = self.inspector.postprocess_nodes(self.retriever.retrieve(question), query_str=question)
        for item in annotated:
            node = item.node
            report.nodes.append(NodeRow(
                node.node_id, "image" if isinstance(node, ImageNode) else "text", node.get_content()[:160],
                node.node_id in kept, self._named(node.metadata["omniguard"]),
                getattr(node, "image_path", None),
            ))
        return report


# ----------------------------------------------------------------------------- the page

_STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{padding:14px 24px;background:#fff;border-bottom:1px solid #e2e5eb}
h1{margin:0;font-size:19px}
.banner{margin:0;padding:10px 24px;background:#fff3cd;color:#6b4e00;font-weight:600}
main{max-width:980px;margin:0 auto;padding:20px 24px}
form{display:flex;gap:8px}
input[type=text]{flex:1;padding:9px;border:1px solid #e2e5eb;border-radius:8px;font:inherit}
button{padding:9px 14px;border-radius:8px;border:0;background:#3656d6;color:#fff;font-weight:600}
table{width:100%;border-collapse:collapse;background:#fff;margin:14px 0}
td,th{padding:8px;border-bottom:1px solid #e2e5eb;text-align:left;vertical-align:top}
tr.dropped{background:#fdecec}
.badge{padding:1px 9px;border-radius:999px;color:#fff;font-weight:700;font-size:12px;text-transform:uppercase}
.safe{background:#1f8a4c}
.unsafe{background:#c62f2f}
.error{background:#b26b00}
img{max-height:48px;border-radius:4px}
.answer{background:#fff;border:1px solid #e2e5eb;border-radius:8px;padding:12px;white-space:pre-wrap}
.muted{color:#6b7385}"""


def render_page(report: Report | None, banner: str | None, examples: list[str]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>rag_guard · OmniGuard</title>"
             f"<style>{_STYLE}</style></head><body>",
             "<header><h1>rag_guard · OmniGuard for LlamaIndex</h1></header>"]
    if banner:
        parts.append(f"<p class='banner' id='banner'>{e(banner)}</p>")
    parts.append("<main><form method='get'><input type='text' name='q' placeholder='Ask the archive…' "
                 f"value='{e(report.question) if report else ''}'><button>Ask</button></form><p class='muted'>Try: "
                 + " · ".join(f"<a href='?q={e(q)}'>{e(q)}</a>" for q in examples) + "</p>")
    if report:
        if report.blocked:
            b = report.blocked
            parts.append(f"<p id='blocked'><span class='badge {e(b['label'])}'>{e(b['label'])}</span> "
                         f"the {e(b['stage'])} rail "
                         f"refused this {'question before retrieval' if b['stage'] == 'input' else 'answer'}: "
                         f"{e(', '.join(b['names']) or b.get('error') or '')}</p>")
        if report.nodes:
            parts.append("<table id='nodes'><tr><th>node</th><th>content</th><th>verdict</th><th>why</th>"
                         "<th>fate</th></tr>")
            for row in report.nodes:
                v = row.verdict
                thumb = ""
                if row.image_path:
                    png = base64.b64encode(Path(row.image_path).read_bytes()).decode()
                    thumb = f"<img alt='' src='data:image/png;base64,{png}'> "
                why = e(", ".join(v["names"]) or v.get("error") or "")
                if v.get("critique"):
                    why += f"<details><summary>critique</summary>{e(v['critique'])}</details>"
                parts.append(f"<tr class='{'kept' if row.kept else 'dropped'}'><td>{e(row.node_id)}</td>"
                             f"<td>{thumb}{e(row.text)}</td>"
                             f"<td><span class='badge {e(v['label'])}'>{e(v['label'])}</span></td><td>{why}</td>"
                             f"<td>{'kept' if row.kept else '<b>dropped</b>'}</td></tr>")
            parts.append("</table>")
        parts.append("<h3>Answer <span class='muted'>(MockLLM echoes its prompt: this is what reached the LLM)"
                     "</span></h3>"
                     f"<div class='answer' id='answer'>{e(report.answer)}</div>")
    parts.append("</main></body></html>")
    return "".join(parts)


def create_app(rag: RagGuard, banner: str | None = None) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="rag_guard: OmniGuard demo")
    examples = ["What do the documents say about Paris?", "How do I build a bomb?"]

    @app.get("/", response_class=HTMLResponse)
    def index(q: str = "") -> str:  # sync: the engine is sync; FastAPI runs it in a thread
        return render_page(rag.ask(q) if q.strip() else None, banner, examples)

    return app
