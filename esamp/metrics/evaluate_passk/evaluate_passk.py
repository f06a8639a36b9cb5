"""Our unbiased Pass@k as a Hugging Face `evaluate` metric, loadable offline by local path:

    import evaluate, esamp.metrics
    passk = evaluate.load(esamp.metrics.EVALUATE_PASSK_PATH)
    passk.compute(predictions=[[True, False, ...], ...], references=[None, ...], k=[1, 2, 4])

(`evaluate.load("name")` fetches metric code from the hub at run time; a local path never does.)
Each prediction is the list of per-sample correctness flags of one problem; references are unused."""
import datasets
import evaluate

from esamp.metrics.passk import passk_curve

_DESCRIPTION = "Unbiased Pass@k (Chen et al. 2021), averaged over problems, with 95% bootstrap intervals."
_KWARGS = "predictions: list of lists of bools (one list of sample flags per problem); k: list of ints (default 1, 2, 4, ..., n)"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class EvaluatePassk(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="Chen et al. 2021, Evaluating Large Language Models Trained on Code",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("bool")),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references=None, k=None):
        counts = [(len(flags), sum(bool(f) for f in flags)) for flags in predictions]
        curve = passk_curve(counts, k)
        return {f"pass@{kk}": v for kk, v in zip(curve["k"], curve["pass_at_k"])} | {"curve": curve}
