"""CPU per request body validated: ``python -m bench.validation [--calls N] [--rounds R]``.

Validates the seed body (CompletionView.InputSerializer) and a /v1 chat body with three messages
(ChatInput) two ways: the serializer (``cls(data=body)``, ``is_valid()``, ``validated_data``, as
the views did) and ``mmm.input_serializers.validated`` (the compiled plan, as they do now).
Prints this process's CPU time per call, the median of ``--rounds`` interleaved rounds.
"""

import argparse
import os
import statistics
import sys
import time

SEED_BODY = {"input": "hello", "model_name": "m"}
CHAT_BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ],
    "temperature": 0.7,
    "max_tokens": 64,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
    import django

    django.setup()
    from inference.openai_views import ChatInput
    from inference.views import CompletionView
    from mmm.input_serializers import fast_plan, validated

    def by_serializer(cls, body):
        serializer = cls(data=body)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def by_plan(cls, body):
        return validated(cls, body)

    cases = {"seed body": (CompletionView.InputSerializer, SEED_BODY), "/v1 chat, 3 messages": (ChatInput, CHAT_BODY)}
    ways = {"serializer": by_serializer, "validated()": by_plan}
    for cls, body in cases.values():
        assert fast_plan(cls) is not None, f"{cls.__name__} has no plan: the bench would time the fallback"
        assert by_plan(cls, body) == by_serializer(cls, body)

    def per_call(way, cls, body) -> float:
        calls = range(args.calls)
        began = time.process_time()
        for _ in calls:
            way(cls, body)
        return (time.process_time() - began) * 1e6 / args.calls

    print(f"{args.calls} validations per round, CPU µs per call, median of {args.rounds} rounds:")
    for case, (cls, body) in cases.items():
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                times[name].append(per_call(way, cls, body))
        medians = {name: statistics.median(values) for name, values in times.items()}
        slow, fast = medians["serializer"], medians["validated()"]
        print(f"  {case:22} serializer {slow:6.1f} µs   validated() {fast:5.2f} µs   ({slow / fast:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
