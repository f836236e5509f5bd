"""The official family texts (Qwen tool block, Llama 3.1 system date and tool prompt) and the Jinja twins of the
built-in qwen (Qwen2.5), qwen3 and llama3 (Llama 3.1) layouts in ``templates.py``.

Each renders the same text as its Python layout (tests compare both to the official templates); ``{% generation %}``
marks exactly the reply and its end-of-turn token, which is what a saved run's ``chat_template`` carries.
"""

from __future__ import annotations

import json


def _jinja_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


QWEN_TOOLS = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
QWEN_TOOLS_END = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                  "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
                  "\"arguments\": <args-json-object>}\n</tool_call>")


LLAMA_DATE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
LLAMA_TOOLS = ("Given the following functions, please respond with a JSON for a function call with its proper "
               "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
               "\"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n")


_QWEN_TOOL_TURN = """\
    {%- elif m.role == 'tool' -%}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' + (m.content or '') + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- elif m.role != 'system' or not loop.first -%}
        {{- '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' }}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif -%}
"""
_QWEN_TOOLS_JINJA = ("{{- " + _jinja_str(QWEN_TOOLS) + " }}{%- for x in tools %}{{- '\\n' + (x | tojson) }}"
                     "{%- endfor %}{{- " + _jinja_str(QWEN_TOOLS_END) + " }}")

QWEN25_JINJA = """\
{%- set has_system = messages and messages[0].role == 'system' -%}
{{- '<|im_start|>system\\n' + ((messages[0].content or '') if has_system else """ + _jinja_str(
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.") + """) }}
{%- if tools %}{{- '\\n\\n' }}""" + _QWEN_TOOLS_JINJA + """{%- endif %}
{{- '<|im_end|>\\n' -}}
{%- for m in messages -%}
    {%- if m.role == 'assistant' -%}
        {{- '<|im_start|>assistant\\n' }}{% generation %}{{- m.content or '' }}
        {%- for c in m.tool_calls or [] %}
            {%- if m.content or not loop.first %}{{- '\\n' }}{%- endif %}
            {{- '<tool_call>\\n{"name": "' + c.function.name + '", "arguments": ' + (c.function.arguments | tojson)
                + '}\\n</tool_call>' }}
        {%- endfor %}{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' -}}
""" + _QWEN_TOOL_TURN

QWEN3_JINJA = """\
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if tools %}
    {{- '<|im_start|>system\\n' + ((messages[0].content or '') + '\\n\\n' if has_system else '') }}
    """ + _QWEN_TOOLS_JINJA + """{{- '<|im_end|>\\n' }}
{%- elif has_system %}{{- '<|im_start|>system\\n' + (messages[0].content or '') + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_query=messages | length - 1, searching=true) -%}
{%- for m in messages[::-1] %}
    {%- if ns.searching and m.role == 'user' and m.content is string
          and not (m.content.startswith('<tool_response>') and m.content.endswith('</tool_response>')) %}
        {%- set ns.searching = false %}{%- set ns.last_query = messages | length - 1 - loop.index0 %}
    {%- endif %}
{%- endfor -%}
{%- for m in messages -%}
    {%- if m.role == 'assistant' -%}
        {%- set content = m.content if m.content is string else '' %}
        {%- set reasoning = '' %}
        {%- if m.reasoning_content is string %}{%- set reasoning = m.reasoning_content %}
        {%- elif '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n' }}{% generation %}
        {%- if loop.index0 > ns.last_query and (loop.last or reasoning) %}
            {{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}{{- content }}{%- endif %}
        {%- for c in m.tool_calls or [] %}
            {%- if content or not loop.first %}{{- '\\n' }}{%- endif %}
            {{- '<tool_call>\\n{"name": "' + c.function.name + '", "arguments": ' }}
            {%- if c.function.arguments is string %}{{- c.function.arguments }}
            {%- else %}{{- c.function.arguments | tojson }}{%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' -}}
""" + _QWEN_TOOL_TURN

LLAMA3_JINJA = """\
{{- '<|begin_of_text|>' -}}
{%- set ns = namespace(rest=messages, system='') -%}
{%- if messages and messages[0].role == 'system' %}
    {%- set ns.system = (messages[0].content or '') | trim %}{%- set ns.rest = messages[1:] %}
{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + ('Environment: ipython\\n' if tools else '')
    + """ + _jinja_str(LLAMA_DATE) + """ + ns.system + '<|eot_id|>' }}
{%- if tools %}
    {%- if not ns.rest %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' + """ + _jinja_str(LLAMA_TOOLS) + """ }}
    {%- for x in tools %}{{- x | tojson(indent=4) }}{{- '\\n\\n' }}{%- endfor %}
    {{- (ns.rest[0].content or '') | trim }}{{- '<|eot_id|>' }}
    {%- set ns.rest = ns.rest[1:] %}
{%- endif %}
{%- for m in ns.rest -%}
    {%- if m.role == 'tool' or m.role == 'ipython' %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + ((m.content or '') | tojson) + '<|eot_id|>' }}
    {%- elif m.tool_calls %}
        {%- if m.tool_calls | length != 1 %}
            {{- raise_exception('This model only supports single tool-calls at once!') }}
        {%- endif %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% generation %}
        {{- '{"name": "' + m.tool_calls[0].function.name + '", "parameters": '
            + (m.tool_calls[0].function.arguments | tojson) + '}<|eot_id|>' }}{% endgeneration %}
    {%- elif m.role == 'assistant' %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% generation %}
        {{- ((m.content or '') | trim) + '<|eot_id|>' }}{% endgeneration %}
    {%- else %}
        {{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + ((m.content or '') | trim) + '<|eot_id|>' }}
    {%- endif %}
{%- endfor -%}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}
"""
